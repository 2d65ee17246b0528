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

from portal.mailbox.services import live_link
from portal.mails import sending
from portal.mailtemplates.placeholders import PlaceholderValues, fill_placeholders
from portal.mailtemplates.services import templates_for
from portal.models import Customer, Direction, LinkState, MailboxLink, MailDraft, MailMessage, MailTemplate, Membership
from portal.scoping import get_in_account

_REPLY_PREFIX = re.compile(r"(re|返信)\s*[:：]", re.IGNORECASE)
NO_MAILBOX = "メールボックスが連携されていないため、返信できません。メールボックス連携を行ってください。"


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


@dataclass(frozen=True)
class Screen:
    """What a compose screen shows besides the form: the sending link, whether it can send, the templates."""

    link: MailboxLink | None
    can_send: bool
    templates: list[MailTemplate]

    def context(self) -> dict:
        """The names the compose templates use."""
        return {"link": self.link, "can_send": self.can_send, "templates": self.templates}


@dataclass
class Sent:
    """The stored message; again=True when this form had been sent before and nothing went out now."""

    message: MailMessage
    again: bool = False
    warnings: list[str] = field(default_factory=list)


def screen(session: Session, actor: Membership) -> Screen:
    """The actor's sending link (a link that needs 再認証 cannot send) and the account's templates."""
    link = live_link(session, actor.id)
    return Screen(link, link is not None and link.state != LinkState.REAUTH, templates_for(session, actor.account_id))


def reply_start(session: Session, actor: Membership, original: MailMessage,
                time_text: Callable[[datetime | None], str]) -> tuple[Composition, MailDraft | None]:
    """A new reply: To the customer, 「Re: 件名」, the quoted original; or the actor's unsent draft of it."""
    draft = find_draft(session, actor, original)
    if draft is not None:
        return Composition(draft.to_address, draft.subject, draft.body, draft.template_id), draft
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


def insert_template(session: Session, actor: Membership, template_id: int, customer: Customer | None,
                    body: str) -> tuple[str, MailTemplate]:
    """The chosen template's body, placeholders filled, above what is already written; and the template."""
    template = get_in_account(session, MailTemplate, template_id, actor.account_id)
    if template is None:
        raise TemplateNotFound(template_id)
    values = PlaceholderValues(customer_name=customer.name if customer else "",
                               company=customer.company if customer else "", member_name=actor.user.name)
    return fill_placeholders(template.body, values) + (body or ""), template


def send_reply(session: Session, actor: Membership, original: MailMessage, typed: Composition,
               env: sending.SendEnvironment, now: datetime) -> Sent:
    """Send a reply in the original's thread; ComposeRefused says why not (a failed send keeps a draft)."""
    outgoing = sending.Outgoing(to=typed.to, subject=typed.subject, body=typed.body, reply_to=original,
                                template_id=typed.template_id, compose_id=typed.compose_id or None)
    sent = _send(session, actor, outgoing, replace(env, now=lambda: now),
                 keep_draft=lambda error: save_draft(session, actor, original, outgoing, error))
    if not sent.again:
        _discard_draft(session, actor, original)
    return sent


def _send(session: Session, actor: Membership, outgoing: sending.Outgoing, env: sending.SendEnvironment,
          keep_draft: Callable[[str], object]) -> Sent:
    """The one sending path of both screens, each failure turned into ComposeRefused."""
    try:
        result = sending.send_mail(session, actor, outgoing, env)
    except sending.InvalidHeader as problem:
        raise ComposeRefused(422, problem.message, problem.field_name) from problem
    except sending.AlreadySent as sent:
        return Sent(sent.message, again=True)
    except sending.NoMailbox as problem:
        raise ComposeRefused(409, NO_MAILBOX) from problem
    except sending.SendFailed as failure:
        keep_draft(failure.message)
        raise ComposeRefused(502, failure.message + " 入力内容は下書きとして保存しました。") from failure
    return Sent(result.message, warnings=result.warnings)


def save_draft(session: Session, actor: Membership, reply_to: MailMessage, typed: sending.Outgoing,
               error: str | None) -> MailDraft:
    """Keep what the member typed (one draft per member and message) so a failed send loses nothing."""
    draft = find_draft(session, actor, reply_to)
    if draft is None:
        draft = MailDraft(account_id=actor.account_id, membership_id=actor.id, reply_to_message_id=reply_to.id)
        session.add(draft)
    draft.to_address, draft.subject, draft.body = typed.to[:254], typed.subject, typed.body
    draft.template_id, draft.last_error = typed.template_id, error
    session.commit()
    return draft


def find_draft(session: Session, actor: Membership, reply_to: MailMessage) -> MailDraft | None:
    """The actor's unsent draft for this message, if any."""
    return session.scalar(select(MailDraft).where(MailDraft.membership_id == actor.id,
                                                  MailDraft.reply_to_message_id == reply_to.id))


def _discard_draft(session: Session, actor: Membership, reply_to: MailMessage) -> None:
    """The draft of a message that went out is done with."""
    session.execute(delete(MailDraft).where(MailDraft.membership_id == actor.id,
                                            MailDraft.reply_to_message_id == reply_to.id))
    session.commit()


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
