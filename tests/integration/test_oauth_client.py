"""portal.oauth.client against the real test provider, and XOAUTH2 logins against the OAuth2 Dovecot."""
import secrets
import urllib.parse

import pytest
from authlib.common.security import generate_token

from portal.mailsync.connection import ConnectionPolicy, MailboxError, ServerSettings, open_imap, open_smtp
from portal.models.mailbox import Security
from portal.oauth.client import OAuthError, ProviderClient, UrlPolicy, check_url, parse_networks
from portal.oauth.providers import OAuthProvider, provider_app
from tests.integration.oidc_provider import MAIL_SCOPE

REDIRECT_URI = "http://127.0.0.1:9/settings/mailbox/oauth/callback"
LOOPBACK_OPEN = UrlPolicy(allow_plaintext=True, allowed_networks=parse_networks("127.0.0.0/8"), timeout=10)


@pytest.fixture
def registered(provider):
    """The portal's application at the provider and a ProviderClient for it."""
    client = provider.register_client([REDIRECT_URI])
    app = provider_app(OAuthProvider.OIDC, client_id=client.client_id, client_secret=client.client_secret,
                       tenant=None, discovery_url=provider.discovery_url, extra_scopes=MAIL_SCOPE, environ={})
    return client, ProviderClient(app, LOOPBACK_OPEN)


def sign_in(provider, oauth, email, **options):
    """Run the browser part; return (code, state, verifier, nonce) from the redirect back."""
    verifier, nonce, state = generate_token(48), generate_token(16), generate_token(16)
    url = oauth.authorization_url(REDIRECT_URI, state, nonce, verifier)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"] == [state] and query["nonce"] == [nonce]
    back = urllib.parse.parse_qs(urllib.parse.urlsplit(provider.sign_in(url, email, **options)).query)
    return back.get("code", [None])[0], back["state"][0], verifier, nonce, back.get("error", [None])[0]


def test_code_exchange_gives_tokens_and_the_verified_address(provider, registered, oauth_mail_user):
    """Tokens with the mail scope and the ID token's verified email (lower-cased)."""
    _, oauth = registered
    code, _state, verifier, nonce, _ = sign_in(provider, oauth, oauth_mail_user.email)
    tokens, identity = oauth.exchange_code(code, REDIRECT_URI, verifier, nonce)
    assert identity.email == oauth_mail_user.email.lower()
    assert tokens.refresh_token and MAIL_SCOPE in tokens.scope.split()
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)


def test_unticked_mail_scope_is_refused(provider, registered, oauth_mail_user):
    """Consent without the mail scope: mail_scope_missing."""
    _, oauth = registered
    code, _state, verifier, nonce, _ = sign_in(provider, oauth, oauth_mail_user.email,
                                               granted_scopes=["openid", "email", "offline_access"])
    with pytest.raises(OAuthError) as caught:
        oauth.exchange_code(code, REDIRECT_URI, verifier, nonce)
    assert caught.value.code == "mail_scope_missing" and "メール" in caught.value.message


def test_id_token_for_another_audience_is_refused(provider, registered, oauth_mail_user):
    """A provider handing out an ID token for another client: id_token_invalid."""
    _, oauth = registered
    provider.id_token_audience = "someone-else"
    code, _state, verifier, nonce, _ = sign_in(provider, oauth, oauth_mail_user.email)
    with pytest.raises(OAuthError) as caught:
        oauth.exchange_code(code, REDIRECT_URI, verifier, nonce)
    assert caught.value.code == "id_token_invalid"


def test_wrong_nonce_wrong_verifier_and_replayed_code_are_refused(provider, registered, oauth_mail_user):
    """The nonce is checked by us; the verifier and single use by the provider."""
    _, oauth = registered
    code, _state, verifier, nonce, _ = sign_in(provider, oauth, oauth_mail_user.email)
    with pytest.raises(OAuthError) as wrong_verifier:
        oauth.exchange_code(code, REDIRECT_URI, generate_token(48), nonce)
    assert wrong_verifier.value.code == "code_rejected"
    with pytest.raises(OAuthError) as wrong_nonce:
        oauth.exchange_code(code, REDIRECT_URI, verifier, "another-nonce")
    assert wrong_nonce.value.code == "id_token_invalid"
    with pytest.raises(OAuthError) as replayed:  # the code was spent by the exchange above
        oauth.exchange_code(code, REDIRECT_URI, verifier, nonce)
    assert replayed.value.code == "code_rejected"


def test_refresh_rotates_and_the_old_token_is_invalid_grant(provider, registered, oauth_mail_user):
    """A rotated refresh token replaces the old one, which is then invalid_grant; an outage is transient."""
    client, oauth = registered
    first = provider.issue_token_directly(client, oauth_mail_user.email)
    second = oauth.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token and second.access_token != first.access_token
    with pytest.raises(OAuthError) as dead:
        oauth.refresh(first.refresh_token)
    assert dead.value.code == "invalid_grant" and "再度サインインして連携" in dead.value.message
    provider.token_errors.append((503, "temporarily_unavailable"))
    with pytest.raises(OAuthError) as outage:
        oauth.refresh(second.refresh_token)
    assert outage.value.code == "provider_unavailable"
    assert oauth.refresh(second.refresh_token).access_token


def test_revoke_kills_the_refresh_token_at_the_provider(provider, registered, oauth_mail_user):
    """RFC 7009 revocation: the provider no longer knows the refresh token as live."""
    client, oauth = registered
    token = provider.issue_token_directly(client, oauth_mail_user.email)
    assert oauth.revoke(token.refresh_token) is True
    assert token.refresh_token not in provider.live_refresh_tokens(oauth_mail_user.email)


def test_provider_urls_need_https_unless_plaintext_is_allowed_for_an_opened_network(provider):
    """http:// needs MAIL_ALLOW_PLAINTEXT and an opened network; loopback needs opening even over https."""
    check_url(provider.discovery_url, LOOPBACK_OPEN)
    for policy in (UrlPolicy(), UrlPolicy(allow_plaintext=True),
                   UrlPolicy(allowed_networks=parse_networks("127.0.0.0/8"))):
        with pytest.raises(OAuthError) as caught:
            check_url(provider.discovery_url, policy)
        assert caught.value.code == "url_refused"
    with pytest.raises(OAuthError):
        check_url(provider.discovery_url.replace("http://", "https://"), UrlPolicy())
    with pytest.raises(OAuthError):
        check_url(f"https://user:pw@{provider.host}:{provider.port}/", LOOPBACK_OPEN)


def test_provider_requests_connect_only_to_checked_addresses(provider, monkeypatch):
    """A provider name that passes check_url and then resolves to a closed network (DNS rebinding) is not reached."""
    import socket
    from portal.mailsync.network import AddressRefused
    real_lookup, lookups = socket.getaddrinfo, []

    def rebinding(host, *args, **kwargs):
        if host == "idp.rebind.example":
            lookups.append(host)
            host = provider.host if len(lookups) == 1 else "127.0.0.2"
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    opened_one = UrlPolicy(allow_plaintext=True, allowed_networks=parse_networks(f"{provider.host}/32"), timeout=5)
    app = provider_app(OAuthProvider.OIDC, client_id="id", client_secret="secret", tenant=None, environ={},
                       discovery_url=provider.discovery_url.replace(provider.host, "idp.rebind.example"),
                       extra_scopes=MAIL_SCOPE)
    with pytest.raises(OAuthError) as caught:
        ProviderClient(app, opened_one).metadata()
    assert caught.value.code == "provider_unavailable" and len(lookups) == 2
    cause = caught.value.__cause__
    while cause is not None and not isinstance(cause, AddressRefused):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, AddressRefused)


def _settings(host, port, security, email, token):
    """XOAUTH2 settings."""
    return ServerSettings(host, port, security, email, token, xoauth2=True)


def test_xoauth2_login_on_imap_and_smtp_and_refusals(provider, registered, oauth_dovecot, oauth_mail_user):
    """A live token logs in to IMAP and submission; a revoked one is imap_token / smtp_token, not a hang."""
    client, _ = registered
    policy = ConnectionPolicy(ca_file=str(oauth_dovecot.ca_file), extra_ports=(
        oauth_dovecot.imaps_port, oauth_dovecot.submission_port), timeout=10, allowed_networks=LOOPBACK_OPEN.allowed_networks)
    token = provider.issue_token_directly(client, oauth_mail_user.email)
    imap = _settings(oauth_dovecot.host, oauth_dovecot.imaps_port, Security.SSL, oauth_mail_user.email,
                     token.access_token)
    smtp = _settings(oauth_dovecot.host, oauth_dovecot.submission_port, Security.STARTTLS, oauth_mail_user.email,
                     token.access_token)
    open_imap(imap, policy).logout()
    open_smtp(smtp, policy).quit()
    assert token.access_token not in repr(imap)
    provider.revoke_user(oauth_mail_user.email)
    with pytest.raises(MailboxError) as imap_refused:
        open_imap(imap, policy)
    with pytest.raises(MailboxError) as smtp_refused:
        open_smtp(smtp, policy)
    assert (imap_refused.value.code, smtp_refused.value.code) == ("imap_token", "smtp_token")


def test_a_token_for_another_mailbox_is_refused(provider, registered, oauth_dovecot, oauth_mail_user):
    """Dovecot (like Exchange and Gmail) refuses user=A with B's token."""
    client, _ = registered
    other = f"other{secrets.token_hex(4)}@example.jp"
    provider.add_user(other)
    token = provider.issue_token_directly(client, other)
    policy = ConnectionPolicy(ca_file=str(oauth_dovecot.ca_file), extra_ports=(oauth_dovecot.imaps_port,),
                              allowed_networks=LOOPBACK_OPEN.allowed_networks)
    with pytest.raises(MailboxError) as caught:
        open_imap(_settings(oauth_dovecot.host, oauth_dovecot.imaps_port, Security.SSL, oauth_mail_user.email,
                            token.access_token), policy)
    assert caught.value.code == "imap_token"
