"""A linked test mailbox on the real Dovecot and aiosmtpd servers, the mail the tests deliver to it, and the
link screen's form."""
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.background import on_mail_imported
from portal.extensions import db
from portal.mailbox.credentials import StoredPasswords
from portal.mailbox.services import LinkRequest, link_mailbox
from portal.mailsync.connection import ConnectionPolicy, ServerSettings
from portal.mailsync.network import parse_networks
from portal.mailsync.engine import EngineConfig, sync_link
from portal.mailsync.runner import connector
from portal.models import MailboxLink, Security, utcnow
from portal.secretbox import SecretBox
from tests.factories import LOOPBACK_NETWORKS, TEST_KEY

CUSTOMER = "yamada@client.example"


def mail(sender, to, subject="ご提案の件", cc=None, body="本文です。", message_id=None, when=None) -> bytes:
    """A small message as a mail client would write it."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    if cc:
        message["Cc"] = cc
    message["Message-ID"] = message_id or make_msgid(domain="test.example")
    message["Date"] = format_datetime(when or datetime.now(timezone.utc))
    message.set_content(body)
    return message.as_bytes().replace(b"\n", b"\r\n")


class Mailbox:
    """A linked test mailbox: the member, the Dovecot user, and helpers to deliver mail and run passes."""

    def __init__(self, dovecot, pki, user, member, smtp):
        self.dovecot, self.user, self.member = dovecot, user, member
        self.policy = ConnectionPolicy(ca_file=str(pki.ca_file), extra_ports=(dovecot.imaps_port, smtp.port),
                                       allowed_networks=parse_networks(LOOPBACK_NETWORKS))
        smtp.add_user(user.email, user.password)
        imap = ServerSettings("127.0.0.1", dovecot.imaps_port, Security.SSL, user.email, user.password)
        smtp_settings = ServerSettings("127.0.0.1", smtp.port, Security.SSL, user.email, user.password)
        self.link = link_mailbox(db.session, member, LinkRequest(user.email, imap, smtp_settings), self.policy,
                                 SecretBox(TEST_KEY), utcnow())

    def deliver(self, raw: bytes, folder: str = "INBOX", when: datetime | None = None) -> int:
        """Append a message to the server, as if it had just arrived."""
        return self.dovecot.append(self.user.email, self.user.password, folder, raw, msg_time=when)

    def sync(self, config: EngineConfig = EngineConfig(), connect=None):
        """Run one pass of the engine over this link, with the production after-import hook."""
        db.session.expire_all()
        connect = connect or connector(StoredPasswords(SecretBox(TEST_KEY)), self.policy)
        return sync_link(db.session, self.link, connect, utcnow, config, on_mail_imported)


def form(user, imap_port, smtp_port, imap_security="ssl", smtp_security="ssl", **overrides):
    """The link form for a test mailbox on 127.0.0.1."""
    data = {"email": user.email, "imap_host": "127.0.0.1", "imap_port": str(imap_port),
            "imap_security": imap_security, "imap_username": user.email, "imap_password": user.password,
            "smtp_host": "127.0.0.1", "smtp_port": str(smtp_port), "smtp_security": smtp_security,
            "smtp_username": "", "smtp_password": ""}
    data.update(overrides)
    return data


def links(app):
    """Every link row."""
    with app.app_context():
        return list(db.session.scalars(select(MailboxLink)))


def feedback(page: BeautifulSoup, name: str) -> str:
    """The error text shown with one field."""
    box = page.find(id=name).find_parent(class_=lambda c: c and ("mb-3" in c or "form-check" in c))
    return " ".join(node.get_text(strip=True) for node in box.select(".invalid-feedback"))
