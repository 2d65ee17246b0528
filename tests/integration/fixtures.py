"""Mail-server fixtures (registered for the whole suite by tests/conftest.py): test PKI, Dovecot, aiosmtpd."""
import secrets

import pytest

from tests.factories import PASSWORD, enable_email, make_account
from tests.integration.oidc_provider import OidcProvider
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


@pytest.fixture(scope="session")
def oidc_provider():
    """The session's OpenID Connect provider on 127.0.0.1 (PKCE enforced, rotating refresh tokens)."""
    with OidcProvider() as provider:
        yield provider


@pytest.fixture
def provider(oidc_provider):
    """The session's provider, with its test knobs put back after each test."""
    yield oidc_provider
    oidc_provider.access_token_lifetime = 3600
    oidc_provider.rotate_refresh_tokens = True
    oidc_provider.id_token_audience = None
    oidc_provider.token_errors.clear()


@pytest.fixture(scope="session")
def relay_sink(pki):
    """The aiosmtpd server Dovecot submission relays to (plaintext on loopback, no AUTH): what got sent."""
    server = SmtpServer(pki, "none", auth_required=False, offer_auth=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oauth_dovecot(pki, oidc_provider, relay_sink):
    """A Dovecot taking XOAUTH2/OAUTHBEARER tokens of oidc_provider (and passwords), IMAP plus submission."""
    yield from _running_dovecot(pki, oauth2_introspection_url=oidc_provider.introspection_url,
                                submission_relay_port=relay_sink.port)


@pytest.fixture
def oauth_mail_user(oauth_dovecot, oidc_provider):
    """A fresh mailbox on oauth_dovecot that is also an account at the provider (password for test set-up)."""
    user = oauth_dovecot.add_user(f"o{secrets.token_hex(6)}@example.jp", secrets.token_urlsafe(12))
    oidc_provider.add_user(user.email)
    return user


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


@pytest.fixture
def portal(make_app, pki):
    """Build an app that trusts the test CA and accepts the given extra ports; returns (app, client)."""
    def build(*ports, **config):
        app = make_app(MAIL_CA_FILE=str(pki.ca_file), MAIL_EXTRA_PORTS=list(ports), MAIL_TIMEOUT_SECONDS=2,
                       **config)
        client = app.test_client()
        with app.app_context():
            account, owner = make_account()
            enable_email(account, owner)
            email = owner.user.email
        client.post("/login", data={"email": email, "password": PASSWORD})
        return app, client
    return build
