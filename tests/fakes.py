"""Fake SMTP and IMAP connectors for unit tests of sending, and a fake IMAP server that refuses logins."""
import smtplib
import socket
import threading
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
        self.sent, self.recipients, self.refuse = [], [], refuse

    def connect(self, settings, policy):
        """open_smtp stand-in."""
        return self

    def send_message(self, mime, from_addr, to_addrs):
        """Record the message (or refuse the recipient)."""
        if self.refuse:
            raise smtplib.SMTPRecipientsRefused({to_addrs[0]: (550, b"no such user")})
        self.sent.append(message_from_bytes(mime.as_bytes()))
        self.recipients.append(list(to_addrs))

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


class FakeImapServer:
    """A loopback socket server speaking just enough IMAP to refuse LOGIN with a chosen answer.

    Dovecot cannot be made to answer `NO [UNAVAILABLE]` on demand; this stands in for the server's answer only.
    """

    def __init__(self, login_answer: str):
        self.login_answer = login_answer
        self.logins = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "FakeImapServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        """Answer connections one by one until closed."""
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection, connection.makefile("rwb") as stream:
                self._session(stream)

    def _session(self, stream) -> None:
        """Greet, answer CAPABILITY, refuse LOGIN as told, say goodbye."""
        stream.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake server ready\r\n")
        stream.flush()
        for line in stream:
            tag, _, rest = line.decode("ascii", "replace").strip().partition(" ")
            command = rest.split(" ", 1)[0].upper()
            if command == "CAPABILITY":
                stream.write(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".encode())
            elif command == "LOGIN":
                self.logins += 1
                stream.write(f"{tag} {self.login_answer}\r\n".encode())
            elif command == "LOGOUT":
                stream.write(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                stream.flush()
                return
            else:
                stream.write(f"{tag} BAD unknown command\r\n".encode())
            stream.flush()


class FakeSmtpServer:
    """A loopback socket server speaking just enough SMTP to answer AUTH with a chosen reply (e.g. a 454).

    aiosmtpd and Dovecot submission cannot be made to fail AUTH temporarily on demand; this stands in for that."""

    def __init__(self, auth_answer: str):
        self.auth_answer = auth_answer
        self.auths = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "FakeSmtpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() at once (close alone does not)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        """Answer connections one by one until closed."""
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection, connection.makefile("rwb") as stream:
                self._session(stream)

    def _session(self, stream) -> None:
        """Greet, offer AUTH in EHLO, answer every AUTH as told, say goodbye."""
        stream.write(b"220 localhost fake ESMTP\r\n")
        stream.flush()
        for line in stream:
            command = line.decode("ascii", "replace").strip().split(" ", 1)[0].upper()
            if command == "EHLO":
                stream.write(b"250-localhost\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n")
            elif command == "AUTH":
                self.auths += 1
                stream.write(f"{self.auth_answer}\r\n".encode())
            elif command == "QUIT":
                stream.write(b"221 bye\r\n")
                stream.flush()
                return
            else:
                stream.write(b"502 5.5.2 unknown command\r\n")
            stream.flush()
