"""Fake SMTP and IMAP connectors for unit tests of sending (integration tests use real servers)."""
import smtplib
from datetime import datetime, timezone
from email import message_from_bytes

from portal.mailbox.credentials import StoredPasswords
from portal.mails.sending import SendEnvironment
from portal.mailsync.connection import ConnectionPolicy
from portal.secretbox import SecretBox
from tests.factories import TEST_KEY

# The fake environment's clock: the moment a sent message is dated.
FAKE_NOW = datetime(2025, 4, 1, 9, 0, 0, 500000, tzinfo=timezone.utc)


class FakeSmtp:
    """Records what would have been sent; can refuse instead."""

    def __init__(self, refuse=False):
        """Start with nothing sent."""
        self.sent, self.refuse = [], refuse

    def connect(self, settings, policy):
        """open_smtp stand-in."""
        return self

    def send_message(self, mime, from_addr, to_addrs):
        """Record the message (or refuse the recipient)."""
        if self.refuse:
            raise smtplib.SMTPRecipientsRefused({to_addrs[0]: (550, b"no such user")})
        self.sent.append(message_from_bytes(mime.as_bytes()))

    def close(self):
        """Nothing to close."""


class FakeImap:
    """Accepts the copy to Sent."""

    def __init__(self):
        """Start with nothing appended."""
        self.appended = []

    def connect(self, settings, policy):
        """open_imap stand-in."""
        return self

    def select_folder(self, name):
        """Nothing to select."""

    def search(self, criteria):
        """No copy exists yet."""
        return []

    def append(self, folder, raw, flags=(), msg_time=None):
        """Record the copy."""
        self.appended.append(folder)

    def close(self):
        """Nothing to close."""


def environment(smtp, imap=None) -> SendEnvironment:
    """A send environment with fake connectors."""
    return SendEnvironment(credentials=StoredPasswords(SecretBox(TEST_KEY)), policy=ConnectionPolicy(),
                           public_base_url="https://portal.test", secret_key="secret", now=lambda: FAKE_NOW,
                           open_smtp=smtp.connect, open_imap=(imap or FakeImap()).connect)
