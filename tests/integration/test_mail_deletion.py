"""Mail deleted in the portal never comes back (issue 12 §1), against a real Dovecot: not on the next pass, not
through another member's link to the same group address, not after unlink and re-link; the server keeps it."""
from email import message_from_bytes
from email.policy import default

from sqlalchemy import func, select

from portal.extensions import db
from portal.features.services import stored_mail_volume
from portal.mailbox.services import unlink_member_link
from portal.models import ImportLogEntry, MailAttachment, MailMessage, MailTombstone, Role, utcnow
from tests.factories import make_member
from tests.integration.mailbox import CUSTOMER, Mailbox, mail

DELETED_SUBJECT = "社外秘の資料"


def stored_subjects(account_id: int) -> list[str]:
    """Subjects of the account's stored messages, sorted."""
    db.session.expire_all()
    return sorted(db.session.scalars(select(MailMessage.subject).where(MailMessage.account_id == account_id)))


def with_attachment(raw: bytes) -> bytes:
    """The message with a small PDF attached (so the deletion has an attachment to remove)."""
    message = message_from_bytes(raw, policy=default)
    message.add_attachment(b"%PDF-1.4 secret", maintype="application", subtype="pdf", filename="資料.pdf")
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def on_server(dovecot, user, message_id: str) -> int:
    """How many copies of the message the mailbox's INBOX holds on the server."""
    with dovecot.connect(user.email, user.password) as imap:
        imap.select_folder("INBOX", readonly=True)
        return len(imap.search(["HEADER", "Message-ID", message_id]))


def test_a_deleted_message_stays_deleted_through_a_second_link_and_a_relink(
        client, auth, app, account, dovecot, pki, mail_user, smtp_ssl):
    """info@ linked by the owner and a manager; the manager deletes a message the owner's pass imported: the
    manager's own pass skips it (logged as deleted), the owner unlinks, links again and the same mail is put back
    in the INBOX: still skipped; other mail keeps coming in, and the server still has the deleted one."""
    account_row, owner = account
    manager = make_member(account_row, Role.MANAGER)
    owners_box = Mailbox(dovecot, pki, mail_user, owner, smtp_ssl)
    managers_box = Mailbox(dovecot, pki, mail_user, manager, smtp_ssl)
    message_id = "<deleted-1@client.example>"
    raw = with_attachment(mail(f'"山田 太郎" <{CUSTOMER}>', mail_user.email, subject=DELETED_SUBJECT,
                               message_id=message_id))
    owners_box.deliver(raw)
    owners_box.deliver(mail(f'"山田 太郎" <{CUSTOMER}>', mail_user.email, subject="通常のご連絡"))
    assert owners_box.sync().imported == 2
    deleted = db.session.scalar(select(MailMessage).where(MailMessage.subject == DELETED_SUBJECT))
    deleted_id, size = deleted.id, deleted.size_bytes
    assert db.session.scalar(select(func.count(MailAttachment.id))) == 1
    volume_before = stored_mail_volume(db.session, account_row.id).bytes

    auth.login_member(manager)
    assert client.post(f"/mails/{deleted_id}/delete").status_code == 302
    assert stored_subjects(account_row.id) == ["通常のご連絡"]
    assert stored_mail_volume(db.session, account_row.id).bytes == volume_before - size
    assert db.session.scalar(select(func.count(MailAttachment.id))) == 0

    # The next pass of the link that imported it, and the other member's first pass over the same mailbox.
    assert owners_box.sync().imported == 0
    result = managers_box.sync()
    assert result.imported == 0 and stored_subjects(account_row.id) == ["通常のご連絡"]
    assert db.session.scalar(select(ImportLogEntry.reason).where(
        ImportLogEntry.link_id == managers_box.link.id, ImportLogEntry.subject == DELETED_SUBJECT)) == "deleted"

    # Unlink and link again; the member moves the mail back into the INBOX (a new UID, the same message).
    unlink_member_link(db.session, owner, owners_box.link, utcnow())
    relinked = Mailbox(dovecot, pki, mail_user, owner, smtp_ssl)
    relinked.deliver(raw)
    relinked.deliver(mail(f'"山田 太郎" <{CUSTOMER}>', mail_user.email, subject="再連携後のご連絡"))
    assert relinked.sync().imported == 1
    assert managers_box.sync().imported == 0  # the new mail is stored already; the deleted one is skipped again
    assert stored_subjects(account_row.id) == sorted(["通常のご連絡", "再連携後のご連絡"])
    assert db.session.scalar(select(func.count(MailTombstone.id))) == 1
    assert db.session.scalar(select(func.count(ImportLogEntry.id)).where(
        ImportLogEntry.subject == DELETED_SUBJECT, ImportLogEntry.reason == "deleted")) == 3
    # The portal never touched the mail server: both copies are still there.
    assert on_server(dovecot, mail_user, message_id) == 2
