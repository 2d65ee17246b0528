"""The credentials seam: stored passwords as the engine and sending get them, and what an unreadable one does."""
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from portal.extensions import db
from portal.mailbox.credentials import StoredPasswords
from portal.mails.sending import Outgoing, SendEnvironment, SendFailed, send_mail
from portal.mailsync.connection import ConnectionPolicy, MailboxError, ServerSettings, open_imap
from portal.mailsync.engine import sync_link
from portal.mailsync.network import parse_networks
from portal.mailsync.runner import connector
from portal.models import LinkState, MailMessage, Security, utcnow
from portal.secretbox import SecretBox
from tests.factories import TEST_KEY, enable_email, make_account, make_customer, make_link


@pytest.fixture
def link(app):
    """The owner's link, made with the test key."""
    account, owner = make_account()
    enable_email(account, owner)
    make_customer(account, email="yamada@client.example")
    return make_link(owner, password="imap-secret")


def test_stored_passwords_give_each_server_its_own_password(link):
    """IMAP and SMTP settings come from the link, each with its own decrypted password."""
    provider = StoredPasswords(SecretBox(TEST_KEY))
    imap, smtp = provider.imap_settings(link), provider.smtp_settings(link)
    assert (imap.host, imap.port, imap.security, imap.password) == ("127.0.0.1", 993, Security.SSL, "imap-secret")
    assert (smtp.port, smtp.security, smtp.password) == (587, Security.STARTTLS, "smtp-imap-secret")


def test_an_unreadable_password_is_a_mailbox_error_in_the_members_words(link):
    """Another key (a lost MAILBOX_ENCRYPTION_KEY): MailboxError with a Japanese message, never SecretBoxError."""
    provider = StoredPasswords(SecretBox(Fernet.generate_key().decode()))
    with pytest.raises(MailboxError) as imap_error:
        provider.imap_settings(link)
    with pytest.raises(MailboxError) as smtp_error:
        provider.smtp_settings(link)
    assert (imap_error.value.code, smtp_error.value.code) == ("imap_login", "smtp_login")
    assert "復号できません" in imap_error.value.message and "入力し直してください" in smtp_error.value.message


def test_a_pass_with_an_unreadable_password_asks_for_reauthentication(link):
    """The engine's connect goes through the provider: the link becomes 要再認証 and is not retried."""
    connect = connector(StoredPasswords(SecretBox(Fernet.generate_key().decode())), ConnectionPolicy())
    result = sync_link(db.session, link, connect, utcnow)
    assert result.state == LinkState.REAUTH and "復号できません" in result.error
    assert sync_link(db.session, link, connect, utcnow).skipped


def test_a_send_with_an_unreadable_password_fails_cleanly_and_keeps_nothing(link):
    """Sending asks the same provider: SendFailed in Japanese, the stored copy withdrawn, no server contacted."""
    def no_server(settings, policy):
        raise AssertionError("no connection may be attempted without a password")

    env = SendEnvironment(credentials=StoredPasswords(SecretBox(Fernet.generate_key().decode())),
                          policy=ConnectionPolicy(), public_base_url=None, secret_key="secret", now=utcnow,
                          open_smtp=no_server, open_imap=no_server)
    with pytest.raises(SendFailed) as failure:
        send_mail(db.session, link.membership, Outgoing(to="yamada@client.example", subject="件名", body="本文"), env)
    assert "復号できません" in failure.value.message
    assert db.session.scalar(select(func.count(MailMessage.id))) == 0


class RenewingProvider:
    """Credentials that record each call's renew flag and hand out a new token each time."""

    def __init__(self):
        """No call yet."""
        self.calls = []

    def imap_settings(self, link, renew=False):
        """A numbered token."""
        self.calls.append(renew)
        return ServerSettings("127.0.0.1", 993, Security.SSL, "a@example.jp", f"token-{len(self.calls)}",
                              xoauth2=True)

    smtp_settings = imap_settings


class FakeImap:
    """Just enough of IMAPClient for the adapter's constructor."""

    normalise_times = use_uid = True


def test_connect_renews_a_refused_token_once(link, monkeypatch):
    """AUTHENTICATIONFAILED at login: one renewal, one new login; a second refusal is the pass's failure."""
    provider, tried = RenewingProvider(), []

    def refuse_first(settings, policy):
        tried.append(settings.password)
        if len(tried) == 1:
            raise MailboxError("imap_token", "refused")
        return FakeImap()

    monkeypatch.setattr("portal.mailsync.runner.open_imap", refuse_first)
    connector(provider, ConnectionPolicy())(link)
    assert (provider.calls, tried) == ([False, True], ["token-1", "token-2"])

    def refuse_always(settings, policy):
        raise MailboxError("imap_token", "refused")

    monkeypatch.setattr("portal.mailsync.runner.open_imap", refuse_always)
    provider.calls.clear()
    with pytest.raises(MailboxError):
        connector(provider, ConnectionPolicy())(link)
    assert provider.calls == [False, True]


@pytest.mark.parametrize("code, state", [
    ("imap_token", LinkState.REAUTH),          # refused even after a refresh
    ("oauth_reauth", LinkState.REAUTH),        # invalid_grant: revoked, password changed, expired
    ("oauth_unavailable", LinkState.ERROR),    # the provider's 5xx or timeout
    ("imap_unavailable", LinkState.ERROR),     # NO [UNAVAILABLE]: the mail server's token check is down
])
def test_oauth_failures_are_reauthentication_or_a_retried_error(link, code, state):
    """Only a dead grant or a refused token needs the member; a provider or server outage is retried."""
    def connect(_):
        raise MailboxError(code, "理由")

    result = sync_link(db.session, link, connect, utcnow)
    assert result.state == state
    assert (link.next_attempt_at is None) == (state == LinkState.REAUTH)


def test_xoauth2_unavailable_is_temporary_not_a_refused_token(monkeypatch):
    """Dovecot answers NO [UNAVAILABLE] when its token check fails: no refresh, no 要再認証, just retry later."""
    from imapclient import IMAPClient
    from imapclient.exceptions import LoginError

    class Unavailable:
        """An IMAP server whose authentication back end is down."""

        Error, AbortError = IMAPClient.Error, IMAPClient.AbortError

        def __init__(self, *args, **kwargs):
            """Connected."""

        def sasl_login(self, *args):
            """The login cannot be checked now."""
            raise LoginError("[UNAVAILABLE] Temporary authentication failure. [host:2024-01-01 00:00:00]")

        def shutdown(self):
            """Dropped."""

    monkeypatch.setattr("portal.mailsync.network.PinnedIMAPClient", Unavailable)
    settings = ServerSettings("127.0.0.1", 993, Security.SSL, "a@example.jp", "token", xoauth2=True)
    with pytest.raises(MailboxError) as raised:
        open_imap(settings, ConnectionPolicy(allowed_networks=parse_networks("127.0.0.0/8")))
    assert raised.value.code == "imap_unavailable" and "一時的" in raised.value.message
