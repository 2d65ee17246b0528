"""Writing mail in the portal: a reply in a thread, or a new mail to a customer. Both go one way to sending.

Routes parse the form and call these; the choice of customer, template filling, drafts and the mapping of every
sending failure to a status and a Japanese message live here, so both screens behave alike.
"""
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from portal.customers.services import visible_customers
from portal.feature_contracts import is_enabled
from portal.mailbox.services import live_link
from portal.mails import sending
from portal.mailsync.charsets import safe_filename
from portal.mailtemplates.placeholders import PlaceholderValues, fill_placeholders, fill_subject
from portal.mailtemplates.services import templates_for
from portal.models import Customer, Direction, LinkState, MailboxLink, MailDraft, MailMessage, MailTemplate, Membership
from portal.scoping import get_in_account

_REPLY_PREFIX = re.compile(r"(re|返信)\s*[:：]", re.IGNORECASE)
# Cc addresses may be separated as people type them: commas, semicolons, spaces, Japanese punctuation.
_CC_SEPARATORS = re.compile(r"[\s,;、，；]+")
MAX_CC = 20
MAX_ATTACHMENTS = 20
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
NO_MAILBOX = "メールボックスが連携されていないため、返信できません。メールボックス連携を行ってください。"
NO_MAILBOX_NEW = "メールボックスが連携されていないため、送信できません。メールボックス連携を行ってください。"
MAIL_OFF = "メール機能がオフのため、返信できません。管理者がメール機能をオンにすると、返信できるようになります。"
MAIL_OFF_NEW = "メール機能がオフのため、送信できません。管理者がメール機能をオンにすると、送信できるようになります。"


class ComposeRefused(Exception):
    """Nothing went out: the HTTP status, the message in the member's words, and the field it concerns (if any)."""

    def __init__(self, status: int, message: str, field_name: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field_name = status, message, field_name


class TemplateNotFound(Exception):
    """The chosen template is not one of the account's (another account's template does not exist)."""


@dataclass
class Composition:
    """What the member typed (or what the screen starts with)."""

    to: str = ""
    subject: str = ""
    body: str = ""
    template_id: int | None = None
    compose_id: str | None = None
    cc: str = ""  # as typed; see cc_addresses
    attachments: tuple[sending.Attachment, ...] = ()


@dataclass(frozen=True)
class Screen:
    """What a compose screen shows besides the form: the sending link, whether it can send, the templates."""

    link: MailboxLink | None
    can_send: bool
    templates: list[MailTemplate]
    mail_on: bool = True

    def context(self) -> dict:
        """The names the compose templates use."""
        return {"link": self.link, "can_send": self.can_send, "templates": self.templates, "mail_on": self.mail_on}

    def refusal(self, reply: bool) -> str:
        """Why this screen cannot send: the feature is off, or the member has no usable mailbox."""
        if not self.mail_on:
            return MAIL_OFF if reply else MAIL_OFF_NEW
        return NO_MAILBOX if reply else NO_MAILBOX_NEW


@dataclass
class Sent:
    """The stored message; again=True when this form had been sent before and nothing went out now."""

    message: MailMessage
    again: bool = False
    warnings: list[str] = field(default_factory=list)


def screen(session: Session, actor: Membership) -> Screen:
    """The actor's sending link (a link that needs 再認証 cannot send) and the account's templates."""
    link = live_link(session, actor.id)
    mail_on = is_enabled(session, actor.account_id)
    return Screen(link, mail_on and link is not None and link.state != LinkState.REAUTH,
                  templates_for(session, actor.account_id), mail_on)


def reply_start(session: Session, actor: Membership, original: MailMessage,
                time_text: Callable[[datetime | None], str]) -> tuple[Composition, MailDraft | None]:
    """A new reply: To the customer, 「Re: 件名」, the quoted original; or the actor's unsent draft of it."""
    draft = find_draft(session, actor, original)
    if draft is not None:
        return _from_draft(draft), draft
    when = original.sent_at or original.received_at
    return Composition(to=reply_recipient(original), subject=reply_subject(original.subject),
                       body=quote(original, time_text(when) + " に")), None


def reply_customer(original: MailMessage, to: str) -> Customer | None:
    """The customer a reply goes to: the one with the To address, else the original's first live customer."""
    customers = [link.customer for link in original.customer_links if link.customer.deleted_at is None]
    for customer in customers:
        if customer.email == to.strip().lower():
            return customer
    return customers[0] if customers else None


def recipients(session: Session, actor: Membership) -> list[Customer]:
    """The live customers the actor may write a new mail to (担当者閲覧制限 hides the others)."""
    return list(session.scalars(visible_customers(actor)))


def chosen_recipient(customers: list[Customer], customer_id: str | None) -> Customer | None:
    """The customer picked in the form, if it is one of the actor's recipients (anything else is no choice)."""
    return next((customer for customer in customers if str(customer.id) == (customer_id or "")), None)


def new_mail_start(session: Session, actor: Membership, customer: Customer) -> tuple[Composition, MailDraft | None]:
    """A new mail to the customer: an empty form, or the actor's unsent draft to this customer."""
    draft = find_draft(session, actor, customer=customer)
    if draft is not None:
        return _from_draft(draft), draft
    return Composition(to=customer.email), None


def _from_draft(draft: MailDraft) -> Composition:
    """The form as the member left it (files are not kept: a browser cannot fill a file field again)."""
    return Composition(draft.to_address, draft.subject, draft.body, draft.template_id, cc=draft.cc_addresses)


def insert_template(session: Session, actor: Membership, template_id: int, customer: Customer | None,
                    typed: Composition, new_mail: bool = False) -> tuple[Composition, MailTemplate]:
    """The chosen template's body, placeholders filled, above what is already written; and the template.

    A new mail with no subject yet takes the template's subject too; a reply keeps its 「Re: 件名」 so the thread
    stays recognisable.
    """
    template = get_in_account(session, MailTemplate, template_id, actor.account_id)
    if template is None:
        raise TemplateNotFound(template_id)
    values = PlaceholderValues(customer_name=customer.name if customer else "",
                               company=customer.company if customer else "", member_name=actor.user.name)
    filled = replace(typed, body=fill_placeholders(template.body, values) + (typed.body or ""))
    if new_mail and not (typed.subject or "").strip():
        filled = replace(filled, subject=fill_subject(template.subject, values))
    return filled, template


def split_cc(text: str) -> list[str]:
    """The Cc field's addresses as typed (commas, semicolons, spaces and Japanese punctuation separate them)."""
    return [item for item in _CC_SEPARATORS.split(text or "") if item]


def cc_addresses(text: str, to: str = "") -> tuple[str, ...]:
    """The Cc addresses as typed, each checked, duplicates and the To address left out; InvalidHeader if not."""
    found: list[str] = []
    for item in split_cc(text):
        address = sending.recipient_address(item, "cc").addr_spec
        if address != (to or "").strip().lower() and address not in found:
            found.append(address)
    if len(found) > MAX_CC:
        raise sending.InvalidHeader("cc", f"Cc は{MAX_CC}件までです。")
    return tuple(found)


def attachment(filename: str, content_type: str, content: bytes) -> sending.Attachment:
    """An uploaded file made safe to name in a header and to store: no path, no control characters."""
    name = safe_filename(filename)  # the importer's own rule
    media_type = (content_type or "").split(";")[0].strip().lower()
    return sending.Attachment(name or "attachment",
                              media_type if _MEDIA_TYPE.match(media_type) else "application/octet-stream", content)


def _checked(typed: Composition, limit: int) -> Composition:
    """The composition with its Cc as checked addresses' text; files within their number and total size."""
    try:
        cc = cc_addresses(typed.cc, typed.to)
    except sending.InvalidHeader as problem:
        raise ComposeRefused(422, problem.message, "cc") from problem
    total = sum(len(file.content) for file in typed.attachments)
    if len(typed.attachments) > MAX_ATTACHMENTS:
        raise ComposeRefused(422, f"添付ファイルは{MAX_ATTACHMENTS}個までです。", "attachments")
    if total > limit:
        raise ComposeRefused(422, f"添付ファイルは合計 {_megabytes(limit)} までです（選択したファイルは合計 "
                                  f"{_megabytes(total)}）。", "attachments")
    return replace(typed, cc=", ".join(cc))


def _megabytes(size: int) -> str:
    """A size in MB as the error message says it."""
    return f"{size / (1024 * 1024):.1f} MB"


def send_reply(session: Session, actor: Membership, original: MailMessage, typed: Composition,
               env: sending.SendEnvironment, now: datetime) -> Sent:
    """Send a reply in the original's thread; ComposeRefused says why not (a failed send keeps a draft)."""
    return _send(session, actor, typed, env, now, reply_to=original)


def send_new_mail(session: Session, actor: Membership, customer: Customer, typed: Composition,
                  env: sending.SendEnvironment, now: datetime) -> Sent:
    """Send a new mail to the customer's address: a new thread on the customer's timeline (Cc never counts)."""
    return _send(session, actor, replace(typed, to=customer.email), env, now, customer=customer)


def _send(session: Session, actor: Membership, typed: Composition, env: sending.SendEnvironment, now: datetime,
          reply_to: MailMessage | None = None, customer: Customer | None = None) -> Sent:
    """The one sending path of both screens, each failure turned into ComposeRefused; a failed send keeps a draft."""
    typed = _checked(typed, env.attachments_max_bytes)
    outgoing = sending.Outgoing(to=typed.to, subject=typed.subject, body=typed.body, reply_to=reply_to,
                                template_id=typed.template_id, compose_id=typed.compose_id or None,
                                cc=tuple(address for address in typed.cc.split(", ") if address),
                                attachments=typed.attachments)
    try:
        result = sending.send_mail(session, actor, outgoing, replace(env, now=lambda: now))
    except sending.InvalidHeader as problem:
        raise ComposeRefused(422, problem.message, problem.field_name) from problem
    except sending.AlreadySent as sent:
        return Sent(sent.message, again=True)
    except sending.NoMailbox as problem:
        raise ComposeRefused(409, NO_MAILBOX if reply_to is not None else NO_MAILBOX_NEW) from problem
    except sending.SendFailed as failure:
        save_draft(session, actor, typed, failure.message, reply_to=reply_to, customer=customer)
        raise ComposeRefused(502, failure.message + " 入力内容は下書きとして保存しました。") from failure
    _discard_draft(session, actor, reply_to=reply_to, customer=customer)
    return Sent(result.message, warnings=result.warnings)


def save_draft(session: Session, actor: Membership, typed: Composition, error: str | None, *,
               reply_to: MailMessage | None = None, customer: Customer | None = None) -> MailDraft:
    """Keep what the member typed (one draft per member and message, or member and customer) so nothing is lost."""
    draft = find_draft(session, actor, reply_to, customer)
    if draft is None:
        draft = MailDraft(account_id=actor.account_id, membership_id=actor.id,
                          reply_to_message_id=reply_to.id if reply_to is not None else None,
                          customer_id=customer.id if reply_to is None and customer is not None else None)
        session.add(draft)
    draft.to_address, draft.subject, draft.body = typed.to[:254], typed.subject, typed.body
    draft.cc_addresses, draft.template_id, draft.last_error = typed.cc, typed.template_id, error
    session.commit()
    return draft


def find_draft(session: Session, actor: Membership, reply_to: MailMessage | None = None,
               customer: Customer | None = None) -> MailDraft | None:
    """The actor's unsent draft of a reply to this message, or else of a new mail to this customer."""
    return session.scalar(select(MailDraft).where(*_draft_key(actor, reply_to, customer)).limit(1))


def _discard_draft(session: Session, actor: Membership, reply_to: MailMessage | None = None,
                   customer: Customer | None = None) -> None:
    """The draft of a mail that went out is done with."""
    session.execute(delete(MailDraft).where(*_draft_key(actor, reply_to, customer)))
    session.commit()


def _draft_key(actor: Membership, reply_to: MailMessage | None, customer: Customer | None) -> tuple:
    """Which draft: the actor's for the answered message, or for a new mail (no message) to the customer."""
    if reply_to is not None:
        return MailDraft.membership_id == actor.id, MailDraft.reply_to_message_id == reply_to.id
    return (MailDraft.membership_id == actor.id, MailDraft.reply_to_message_id.is_(None),
            MailDraft.customer_id == customer.id)


def reply_subject(subject: str) -> str:
    """「Re: 」 and the subject exactly as the customer wrote it; a leading Re:/返信: is not doubled.

    The thread is found by its own key (the answered message's thread), never by this line.
    """
    subject = (subject or "").strip()
    if _REPLY_PREFIX.match(subject):
        return subject
    return f"Re: {subject}" if subject else "Re:"


def quote(message: MailMessage, when_text: str) -> str:
    """The original message as quoted text under the reply."""
    sender = f"{message.from_name} <{message.from_address}>" if message.from_name else message.from_address
    lines = (message.text_body or _text_from_html(message.html_body or "")).strip().splitlines()
    return f"\n\n{when_text} {sender}:\n" + "\n".join("> " + line for line in lines)


def _text_from_html(markup: str) -> str:
    """A rough plain-text version of an HTML body, for quoting."""
    from bs4 import BeautifulSoup
    return BeautifulSoup(markup, "html.parser").get_text("\n")


def reply_recipient(message: MailMessage) -> str:
    """Whom a reply goes to: the sender of received mail, the first recipient of sent mail."""
    if message.direction == Direction.RECEIVED:
        return message.from_address
    first = (message.to_addresses or "").split(",")[0]
    match = re.search(r"<([^>]+)>", first)
    return (match.group(1) if match else first).strip()
