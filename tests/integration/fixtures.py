"""Mail-server fixtures (registered for the whole suite by tests/conftest.py): test PKI, Dovecot, aiosmtpd."""
import secrets

import pytest

from tests.integration.servers import Dovecot, SmtpServer, find_dovecot, make_test_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """Throwaway CA + localhost/127.0.0.1 server certificate + an unrelated self-signed ("untrusted") one."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def _running_dovecot(pki, **options):
    """Start a Dovecot (failing loudly when it is not installed), yield it, and always stop it."""
    if find_dovecot() is None:
        # Never skip: a silently skipped mail suite looks green while testing nothing.
        pytest.fail("dovecot is not installed: `apt-get install dovecot-imapd` (make test does it)", pytrace=False)
    server = Dovecot(pki, **options).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot(pki):
    """The shared Dovecot of the session; its certificate is signed by pki.ca_file."""
    yield from _running_dovecot(pki)


@pytest.fixture(scope="session")
def untrusted_dovecot(pki):
    """A second Dovecot presenting the self-signed untrusted certificate (started only when asked for)."""
    yield from _running_dovecot(pki, use_untrusted_cert=True)


@pytest.fixture
def mail_user(dovecot):
    """A fresh user with an empty mailbox on the shared Dovecot: MailUser(email, password)."""
    return dovecot.add_user(f"u{secrets.token_hex(6)}@example.jp", secrets.token_urlsafe(12))


@pytest.fixture
def smtp_server(pki):
    """Factory: smtp_server(security="ssl"|"starttls"|"none", users=..., ...) -> a started SmtpServer, stopped after."""
    servers = []

    def start(security="ssl", **options):
        server = SmtpServer(pki, security, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_ssl(smtp_server):
    """An implicit-TLS (SMTPS) server with no users yet; add them with .add_user()."""
    return smtp_server("ssl")


@pytest.fixture
def smtp_starttls(smtp_server):
    """A plaintext server offering STARTTLS; AUTH is offered only after STARTTLS."""
    return smtp_server("starttls")


@pytest.fixture
def smtp_plain(smtp_server):
    """A server without TLS; AUTH allowed in plaintext."""
    return smtp_server("none")
