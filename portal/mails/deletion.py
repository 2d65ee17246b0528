"""Deleting imported mail in the portal: the message and everything stored with it go, its key stays as a tombstone.

The mail server is never touched (the help page promises the member's mail software keeps it). The tombstone is
what keeps it gone: every import pass, of any link of the account (another member's link to the same group
address, or the same mailbox unlinked and linked again), skips a message whose key has one.
"""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from portal import audit
from portal.models import (Enrollment, MailAttachment, MailCustomer, MailDraft, MailMessage, MailSource,
                           MailTombstone, Membership, TrackedLink, TrackingEvent)
from portal.policy import Action, ensure
from portal.scoping import for_account


@dataclass(frozen=True)
class Deleted:
    """What a deletion removed: how many messages and how many bytes of stored mail (attachments are inside)."""

    messages: int
    bytes: int


def delete_messages(session: Session, actor: Membership, messages: list[MailMessage], now: datetime) -> Deleted:
    """Delete the actor's account's messages with their attachments, sightings and tracking; one tombstone and
    one audit entry each; commits. Managers and above only (PermissionDenied otherwise)."""
    ensure(actor.role, Action.DELETE_MAIL)
    messages = [message for message in messages if message.account_id == actor.account_id]
    ids = [message.id for message in messages]
    if not ids:
        return Deleted(0, 0)
    known = set(session.scalars(for_account(select(MailTombstone.message_key), actor.account_id)
                                .where(MailTombstone.message_key.in_([m.message_key for m in messages]))))
    for message in messages:
        if message.message_key not in known:
            session.add(MailTombstone(account_id=actor.account_id, message_key=message.message_key,
                                      deleted_at=now, deleted_by_user_id=actor.user_id))
            known.add(message.message_key)
        audit.record(session, actor.account_id, actor.user_id, "mail.delete", "mail_message", message.id,
                     subject=message.subject[:200], direction=message.direction.value,
                     received_at=message.received_at.isoformat())
    freed = sum(message.size_bytes for message in messages)
    # Automations keep running; they only forget a message that no longer exists.
    session.execute(update(Enrollment).where(Enrollment.last_message_id.in_(ids)).values(last_message_id=None))
    session.execute(update(Enrollment).where(Enrollment.stop_message_id.in_(ids)).values(stop_message_id=None))
    session.execute(delete(TrackingEvent).where(TrackingEvent.message_id.in_(ids)))
    session.execute(delete(TrackedLink).where(TrackedLink.message_id.in_(ids)))
    session.execute(delete(MailDraft).where(MailDraft.reply_to_message_id.in_(ids)))
    session.execute(delete(MailAttachment).where(MailAttachment.message_id.in_(ids)))
    session.execute(delete(MailCustomer).where(MailCustomer.message_id.in_(ids)))
    session.execute(delete(MailSource).where(MailSource.message_id.in_(ids)))
    session.execute(delete(MailMessage).where(MailMessage.id.in_(ids)), execution_options={"synchronize_session": False})
    session.commit()
    return Deleted(len(ids), freed)


def thread_of(session: Session, message: MailMessage) -> list[MailMessage]:
    """Every message of the message's thread in its account (the message alone without a thread), oldest first."""
    if message.thread_id is None:
        return [message]
    return list(session.scalars(for_account(select(MailMessage), message.account_id)
                                .where(MailMessage.thread_id == message.thread_id)
                                .order_by(MailMessage.received_at, MailMessage.id)))
