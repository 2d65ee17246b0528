"""Test data builders that go through the real services."""
from itertools import count

from portal.customers.services import CustomerData, create_customer
from portal.extensions import db
from portal.features.services import set_feature
from portal.mailbox.services import LinkRequest, link_mailbox
from portal.mailsync.connection import ConnectionPolicy, ServerSettings
from portal.mailsync.verify import FolderSnapshot
from portal.models import (EMAIL_FEATURE, Account, Customer, Direction, FolderRole, MailAttachment, MailboxLink,
                           MailCustomer, MailMessage, MailThread, Membership, MembershipState, Role, Security, utcnow)
from portal.secretbox import SecretBox
from portal.settings.services import create_account
from portal.users.services import add_member

PASSWORD = "correct-horse-battery"
# The test servers (Dovecot, aiosmtpd, the OIDC provider) listen on loopback, which the portal refuses by default.
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"
_serial = count(1)


def make_account(name: str | None = None) -> tuple[Account, Membership]:
    """An account with its owner; returns (account, owner membership)."""
    number = next(_serial)
    account = create_account(db.session, name or f"会社{number}", f"owner{number}@example.jp", PASSWORD,
                             f"オーナー{number}")
    owner = db.session.query(Membership).filter_by(account_id=account.id, role=Role.OWNER).one()
    return account, owner


def make_member(account: Account, role: Role, email: str | None = None,
                state: MembershipState = MembershipState.ACTIVE) -> Membership:
    """A member of the account with the given role and state."""
    number = next(_serial)
    membership, _ = add_member(db.session, account, None, email or f"{role.value}{number}@example.jp",
                               f"{role.value}さん{number}", role, PASSWORD)
    if state != MembershipState.ACTIVE:
        membership.state = state
        db.session.commit()
    return membership


def make_customer(account: Account, name: str | None = None, email: str | None = None,
                  assigned: Membership | None = None, company: str = "") -> Customer:
    """A customer of the account."""
    number = next(_serial)
    return create_customer(db.session, None, CustomerData(
        name=name or f"顧客{number}", email=email or f"customer{number}@client.example",
        company=company, assigned_membership_id=assigned.id if assigned else None), account=account)


TEST_KEY = "q3f5W8l1hXo3dQKcTn7VbP1m5eZx9yLr0aS2uJ4kG6E="


def enable_email(account: Account, actor: Membership) -> None:
    """Turn the メール feature on for the account."""
    set_feature(db.session, actor, EMAIL_FEATURE, True, utcnow())


def fake_verifier(uidvalidity: int = 1000, inbox_next: int = 5, sent_next: int = 3):
    """A stand-in for the real server check (unit tests only; integration tests use Dovecot)."""
    def verify(imap, smtp, policy):
        return [FolderSnapshot(FolderRole.INBOX, "INBOX", uidvalidity, inbox_next),
                FolderSnapshot(FolderRole.SENT, "Sent", uidvalidity + 1, sent_next)]
    return verify


def make_link(membership: Membership, email: str | None = None, password: str = "imap-secret") -> MailboxLink:
    """A live link made through the real service with a fake server check (loopback, so a sync only fails)."""
    settings = ServerSettings("127.0.0.1", 993, Security.SSL, email or membership.user.email, password)
    smtp = ServerSettings("127.0.0.1", 587, Security.STARTTLS, settings.username, "smtp-" + password)
    request = LinkRequest(email=email or membership.user.email, imap=settings, smtp=smtp)
    return link_mailbox(db.session, membership, request, ConnectionPolicy(), SecretBox(TEST_KEY), utcnow(),
                        verifier=fake_verifier())


def make_message(account: Account, customers: list[Customer] = (), *, member: Membership | None = None,
                 direction: Direction = Direction.RECEIVED, subject: str = "お見積りの件", text: str | None = "本文です。",
                 html: str | None = None, sender: str | None = None, to: str = "", received_at=None,
                 thread: MailThread | None = None, attachments: list[MailAttachment] = ()) -> MailMessage:
    """An imported message stored directly (web tests; the engine's own tests import real mail)."""
    number = next(_serial)
    when = received_at or utcnow()
    if thread is None:
        thread = MailThread(account_id=account.id, subject_key=subject, last_message_at=when)
        db.session.add(thread)
    message = MailMessage(
        account_id=account.id, message_key=f"mid:test{number}@example.jp", message_id_header=f"test{number}@example.jp",
        thread=thread, direction=direction, membership_id=member.id if member else None, subject=subject,
        from_address=sender or (customers[0].email if customers and direction == Direction.RECEIVED
                                else "staff@example.jp"),
        to_addresses=to, received_at=when, sent_at=when, text_body=text, html_body=html)
    message.customer_links.extend(MailCustomer(customer_id=customer.id) for customer in customers)
    message.attachments.extend(attachments)
    db.session.add(message)
    db.session.commit()
    return message
