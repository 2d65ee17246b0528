"""Sending from a member's linked mailbox: build it safely, track it, send over SMTP, keep it in thread and Sent."""
import html
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from typing import Callable, Mapping

from imapclient import IMAPClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from portal.auth.services import normalise_email
from portal.mailbox.credentials import link_credentials
from portal.mailbox.services import connection_policy, live_link
from portal.mailsync.connection import (TOKEN_REFUSED_CODES, ConnectionPolicy, MailboxError, ServerSettings,
                                        close_quietly, open_imap, open_smtp)
from portal.mailsync.credentials import CredentialsProvider
from portal.mailsync.headers import decode_header_value, normalise_subject
from portal.models import (Customer, Direction, FolderRole, LinkState, MailAttachment, MailboxLink, MailCustomer,
                           MailMessage, MailSource, MailThread, Membership, TrackedLink, utcnow)
from portal.scoping import for_account
from portal.tracking.tokens import CLICK_PATH, OPEN_PATH, click_token, new_tracking_id, open_token

URL_PATTERN = re.compile(r"https?://[^\s<>\"'（）「」、。]+", re.IGNORECASE)
# Real line breaks, typed or inside an RFC 2047 encoded word (which the mail library decodes): either could start
# a new header (header injection). Text that merely names one (`C:\\new`, `%0a`, `=0A`) is harmless and allowed.
_HEADER_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
MAX_REFERENCES = 20


class NoMailbox(Exception):
    """The member has no linked mailbox to send from."""


class InvalidHeader(Exception):
    """A header field holds a line break (raw or encoded) or an unusable address."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field_name = field_name
        self.message = message


class AlreadySent(Exception):
    """This compose form was sent before (a second click or a resubmitted page); nothing goes out again."""

    def __init__(self, message: MailMessage):
        super().__init__(message.id)
        self.message = message


class SendFailed(Exception):
    """The SMTP server did not take the message; the message is in the member's words."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Attachment:
    """A file the member attaches: the name the recipient sees, its media type and its bytes."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Outgoing:
    """What to send: one recipient, Cc, a subject, a plain-text body, files, and the message it answers (if any)."""

    to: str
    subject: str
    body: str
    cc: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    reply_to: MailMessage | None = None
    thread: MailThread | None = None
    template_id: int | None = None
    # A random id of the compose form: it becomes the Message-ID, so sending the same form twice is detectable.
    compose_id: str | None = None


@dataclass(frozen=True)
class SendEnvironment:
    """Everything sending needs from outside: credentials, policy, the portal's public address, a clock, connectors."""

    credentials: CredentialsProvider  # the link's SMTP and IMAP settings (the same seam the import uses)
    policy: ConnectionPolicy
    public_base_url: str | None  # None: tracking is off (links to an unreachable portal would break the mail)
    secret_key: str
    now: Callable[[], datetime]
    attachments_max_bytes: int = 10 * 1024 * 1024  # the files of one mail together (MAIL_ATTACHMENTS_MAX_BYTES)
    open_smtp: Callable[[ServerSettings, ConnectionPolicy], smtplib.SMTP] = open_smtp
    open_imap: Callable[[ServerSettings, ConnectionPolicy], IMAPClient] = open_imap


def send_environment(config: Mapping) -> SendEnvironment:
    """Keys, connection rules, the portal's public address and the clock, from the app settings."""
    return SendEnvironment(credentials=link_credentials(config), policy=connection_policy(config),
                           public_base_url=config["PUBLIC_BASE_URL"], secret_key=config["SECRET_KEY"], now=utcnow,
                           attachments_max_bytes=config["MAIL_ATTACHMENTS_MAX_BYTES"])


@dataclass
class SendResult:
    """The stored message and whether the copy in Sent could be made (or was already made by the server)."""

    message: MailMessage
    sent_copy_saved: bool = True
    warnings: list[str] = field(default_factory=list)


def check_header_text(field_name: str, value: str) -> str:
    """Refuse line breaks in a header value, typed or RFC 2047 encoded; returns the value."""
    if _HEADER_BREAKS.search(value or "") or _HEADER_BREAKS.search(decode_header_value(value or "")):
        raise InvalidHeader(field_name, "改行を含めることはできません。")
    return value


def one_line(name: str) -> str:
    """A stored name as a header's display name: line breaks and other controls become spaces.

    The forms refuse them now, but older rows (and names typed before) may hold one: Address() would raise on it.
    """
    return " ".join(_CONTROLS.sub(" ", name or "").split())


_FIELD_LABELS = {"to": "宛先", "cc": "Cc"}


def recipient_address(value: str, field_name: str = "to") -> Address:
    """One recipient as an email Address object (never a concatenated string)."""
    check_header_text(field_name, value)
    label = _FIELD_LABELS.get(field_name, "宛先")
    try:
        address = Address(addr_spec=normalise_email(value))
    except (ValueError, IndexError, TypeError) as error:
        raise InvalidHeader(field_name, f"{label}のメールアドレスが正しくありません（{value}）。") from error
    if not address.username or not address.domain or "," in value or ";" in value:
        raise InvalidHeader(field_name, f"{label}は1件ずつメールアドレスを入力してください。")
    return address


def sending_link(session: Session, member: Membership) -> MailboxLink:
    """The member's linked mailbox that can send now, or NoMailbox."""
    link = live_link(session, member.id)
    if link is None or link.state == LinkState.REAUTH:
        raise NoMailbox()
    return link


def send_mail(session: Session, member: Membership, outgoing: Outgoing, env: SendEnvironment) -> SendResult:
    """Store it in its thread, send it through the member's SMTP server, copy it to Sent; SendFailed keeps nothing."""
    link = sending_link(session, member)
    to = recipient_address(outgoing.to)
    cc = [recipient_address(address, "cc") for address in outgoing.cc]
    subject = check_header_text("subject", (outgoing.subject or "").strip())
    sent_at = env.now()
    domain = link.email.rsplit("@", 1)[-1]
    message_id = f"{outgoing.compose_id}@{domain}" if outgoing.compose_id else make_msgid(domain=domain).strip("<>")
    already = session.scalar(for_account(select(MailMessage), member.account_id)
                             .where(MailMessage.message_key == "mid:" + message_id[:240]))
    if already is not None:
        raise AlreadySent(already)
    # Credentials before the first write: an OAuth2 refresh commits the rotated token in its own transaction,
    # which on SQLite would wait on (and fail behind) a write of ours that is still open.
    try:
        smtp_settings = env.credentials.smtp_settings(link)
    except MailboxError as error:
        raise SendFailed(error.message) from error
    message = _store_sent(session, member, link, outgoing, to, cc, subject, message_id, sent_at)
    message.tracked = bool(env.public_base_url)
    message.tracking_id = new_tracking_id() if message.tracked else None
    session.flush()  # ids for the tracking tokens
    html_part = _html_part(session, message, outgoing.body, env)
    mime = _mime(member, link, to, cc, subject, message_id, outgoing, sent_at, html_part)
    raw = mime.as_bytes(policy=SMTP_POLICY)
    message.raw, message.size_bytes = raw, len(raw)
    # Stored before it goes out: a server that files its own Sent copy (Gmail does) may be imported meanwhile,
    # and the importer must find this message by its Message-ID instead of storing a second one.
    session.commit()
    try:
        refused = _smtp_send(link, smtp_settings, mime, [to, *cc], env)
    except SendFailed:
        _withdraw(session, message.id)
        raise
    session.commit()
    result = SendResult(message)
    if refused:
        result.warnings.append(f"次の宛先はメールサーバーに受け付けられなかったため、届いていません: "
                               f"{', '.join(refused)}")
    try:
        _copy_to_sent(link, raw, message_id, sent_at, env)
    except MailboxError as error:
        result.sent_copy_saved = False
        result.warnings.append("送信は完了しましたが、送信済みフォルダへの保存に失敗しました。" + error.message)
    return result


def _withdraw(session: Session, message_id: int) -> None:
    """Remove a stored message the server refused, unless the importer already saw it in Sent (then it did go out)."""
    session.rollback()
    if session.scalar(select(MailSource.id).where(MailSource.message_id == message_id).limit(1)) is not None:
        return
    thread_id = session.scalar(select(MailMessage.thread_id).where(MailMessage.id == message_id))
    for model in (TrackedLink, MailCustomer, MailAttachment):
        session.execute(delete(model).where(model.message_id == message_id))
    session.execute(delete(MailMessage).where(MailMessage.id == message_id))
    if thread_id is not None and session.scalar(
            select(MailMessage.id).where(MailMessage.thread_id == thread_id).limit(1)) is None:
        session.execute(delete(MailThread).where(MailThread.id == thread_id))
    session.commit()


def _store_sent(session: Session, member: Membership, link: MailboxLink, outgoing: Outgoing, to: Address,
                cc: list[Address], subject: str, message_id: str, sent_at: datetime) -> MailMessage:
    """The message as the thread shows it (without tracking), keyed like the importer will key the Sent copy."""
    thread = outgoing.thread or (outgoing.reply_to.thread if outgoing.reply_to is not None else None)
    if thread is None:
        thread = MailThread(account_id=member.account_id, subject_key=normalise_subject(subject)[:300],
                            last_message_at=sent_at)
        session.add(thread)
    thread.last_message_at = max(thread.last_message_at, sent_at)
    message = MailMessage(
        account_id=member.account_id, message_key="mid:" + message_id[:240], message_id_header=message_id,
        in_reply_to=outgoing.reply_to.message_id_header if outgoing.reply_to is not None else None,
        references=" ".join(_references(outgoing.reply_to)), thread=thread, direction=Direction.SENT,
        membership_id=member.id, sent_by_membership_id=member.id, subject=subject, from_address=link.email,
        from_name=member.user.name, to_addresses=to.addr_spec, cc_addresses=", ".join(a.addr_spec for a in cc),
        sent_at=sent_at, received_at=sent_at, text_body=outgoing.body, html_body=None)
    # Kept like an imported message's files, so the thread shows them and the Sent copy's import adds nothing.
    message.attachments.extend(
        MailAttachment(filename=file.filename, content_type=file.content_type, size_bytes=len(file.content),
                       inline=False, content=file.content) for file in outgoing.attachments)
    session.add(message)
    # Only To makes it a customer's mail, as the import rules say: Cc never does.
    customers = session.scalars(for_account(select(Customer.id), member.account_id, Customer).where(
        Customer.email == to.addr_spec, Customer.deleted_at.is_(None)))
    message.customer_links.extend(MailCustomer(customer_id=customer_id) for customer_id in customers)
    return message


def _references(reply_to: MailMessage | None) -> list[str]:
    """The answered message's References plus its own Message-ID, newest last, bounded."""
    if reply_to is None:
        return []
    ids = (reply_to.references or "").split()
    if reply_to.message_id_header:
        ids.append(reply_to.message_id_header)
    return ids[-MAX_REFERENCES:]


def _html_part(session: Session, message: MailMessage, body: str, env: SendEnvironment) -> str:
    """The HTML part: the member's text with links rewritten to click tokens and a 1x1 open image, when tracking."""
    parts = []
    position = 0
    for line in body.splitlines():
        if line.lstrip().startswith(">"):  # quoted text: not the member's links to track
            parts.append(html.escape(line))
            continue
        pieces, last = [], 0
        for match in URL_PATTERN.finditer(line):
            url = match.group(0)
            pieces.append(html.escape(line[last:match.start()]))
            if not message.tracked:
                pieces.append(f'<a href="{html.escape(url)}">{html.escape(url)}</a>')
            elif OPEN_PATH in url or CLICK_PATH in url:
                pieces.append(html.escape(url))
            else:
                link = TrackedLink(message_id=message.id, position=position, url=url)
                session.add(link)
                session.flush()
                position += 1
                target = f"{env.public_base_url}{CLICK_PATH}{click_token(env.secret_key, message.tracking_id, link.position)}"
                pieces.append(f'<a href="{html.escape(target)}">{html.escape(url)}</a>')
            last = match.end()
        pieces.append(html.escape(line[last:]))
        parts.append("".join(pieces))
    pixel = ""
    if message.tracked:
        url = f"{env.public_base_url}{OPEN_PATH}{open_token(env.secret_key, message.tracking_id)}"
        pixel = f'<img src="{html.escape(url)}" width="1" height="1" alt="" style="display:block;border:0">'
    return ('<!doctype html><html><head><meta charset="utf-8"></head><body>'
            f'<div style="font-family:sans-serif;white-space:normal">{"<br>".join(parts)}</div>{pixel}'
            '</body></html>')


def _mime(member: Membership, link: MailboxLink, to: Address, cc: list[Address], subject: str, message_id: str,
          outgoing: Outgoing, sent_at: datetime, html_part: str) -> EmailMessage:
    """The MIME message: plain text with an HTML alternative, then the files; headers from Address objects only."""
    mime = EmailMessage()
    mime["From"] = Address(display_name=one_line(member.user.name), addr_spec=link.email)
    mime["To"] = to
    if cc:
        mime["Cc"] = cc
    mime["Subject"] = subject
    mime["Date"] = format_datetime(sent_at)
    mime["Message-ID"] = f"<{message_id}>"
    if outgoing.reply_to is not None and outgoing.reply_to.message_id_header:
        mime["In-Reply-To"] = f"<{outgoing.reply_to.message_id_header}>"
        mime["References"] = " ".join(f"<{item}>" for item in _references(outgoing.reply_to))
    mime.set_content(outgoing.body)
    mime.add_alternative(html_part, subtype="html")
    for file in outgoing.attachments:
        maintype, _, subtype = file.content_type.partition("/")
        mime.add_attachment(file.content, maintype=maintype, subtype=subtype, filename=file.filename)
    return mime


def _logged_in(link: MailboxLink, settings: ServerSettings, opener, settings_of, env: SendEnvironment):
    """Log in with the settings; a refused access token gets one renewal (an OAuth2 refresh) and one retry.

    Called only once the sending session has committed, so a refresh's own transaction never waits on it.
    """
    try:
        return opener(settings, env.policy)
    except MailboxError as error:
        if error.code not in TOKEN_REFUSED_CODES:
            raise
    return opener(settings_of(link, renew=True), env.policy)


def _smtp_send(link: MailboxLink, settings: ServerSettings, mime: EmailMessage, recipients: list[Address],
               env: SendEnvironment) -> list[str]:
    """Hand the message to the company's SMTP server; returns the recipients it refused while taking the rest.

    Every refusal of the whole message becomes SendFailed in Japanese.
    """
    try:
        smtp = _logged_in(link, settings, env.open_smtp, env.credentials.smtp_settings, env)
    except MailboxError as error:
        raise SendFailed(error.message) from error
    try:
        refused = smtp.send_message(mime, from_addr=link.email, to_addrs=[a.addr_spec for a in recipients])
    except smtplib.SMTPRecipientsRefused as error:
        raise SendFailed(f"宛先 {', '.join(error.recipients)} はメールサーバーに受け付けられませんでした。"
                         f"アドレスを確認してください。{_reply_text(error.recipients)}") from error
    except smtplib.SMTPSenderRefused as error:
        raise SendFailed(f"送信元 {link.email} はメールサーバーに受け付けられませんでした"
                         f"（{error.smtp_code}）。") from error
    except smtplib.SMTPDataError as error:
        raise SendFailed(f"メールサーバーが本文を受け付けませんでした（{error.smtp_code}）。") from error
    except (socket.timeout, TimeoutError) as error:
        raise SendFailed("メールサーバーから応答がありません（タイムアウト）。時間をおいて再度送信してください。") from error
    except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
        raise SendFailed("メールサーバーとの通信中にエラーが発生したため、送信できませんでした。") from error
    finally:
        close_quietly(smtp)
    return list(refused or {})


def _reply_text(recipients: dict) -> str:
    """The server's own words for a refused recipient, as a hint."""
    for code, text in recipients.values():
        reason = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return f"（{code} {reason}）"
    return ""


def _copy_to_sent(link: MailboxLink, raw: bytes, message_id: str, sent_at: datetime, env: SendEnvironment) -> None:
    """Append to the Sent folder unless the server already filed a copy (Gmail, Exchange do)."""
    sent = next((folder for folder in link.folders if folder.role == FolderRole.SENT), None)
    if sent is None:
        return
    client = _logged_in(link, env.credentials.imap_settings(link), env.open_imap, env.credentials.imap_settings,
                        env)  # MailboxError: a warning
    try:
        client.select_folder(sent.name)
        if not client.search(["HEADER", "Message-ID", message_id]):
            client.append(sent.name, raw, flags=[b"\\Seen"], msg_time=sent_at)
    except (IMAPClient.Error, OSError) as error:
        raise MailboxError("sent_copy", "IMAPサーバーでエラーが発生しました。") from error
    finally:
        close_quietly(client)
