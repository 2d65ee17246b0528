"""Self-tests of the OAuth2 test world: the OpenID provider, Dovecot taking its tokens, submission to the sink."""
import base64
import smtplib
import time
import urllib.parse

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from imapclient.exceptions import LoginError

from tests.integration.oidc_provider import MAIL_SCOPE

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never called: the tests read the provider's redirect


def xoauth2(email: str, token: str) -> str:
    """The SASL XOAUTH2 initial response, base64 (what smtplib sends after AUTH XOAUTH2)."""
    return base64.b64encode(f"user={email}\x01auth=Bearer {token}\x01\x01".encode()).decode()


@pytest.fixture
def portal_client(provider):
    """A registered confidential client (what the portal's preset holds)."""
    return provider.register_client([REDIRECT_URI])


def authorize(provider, client, verifier: str, scope=f"openid email offline_access {MAIL_SCOPE}"):
    """(OAuth2Session, authorize URL) with a PKCE S256 challenge for verifier."""
    session = OAuth2Session(client.client_id, client.client_secret, scope=scope, redirect_uri=REDIRECT_URI,
                            code_challenge_method="S256", token_endpoint_auth_method="client_secret_post")
    url, _state = session.create_authorization_url(f"{provider.issuer}/authorize", code_verifier=verifier,
                                                   nonce=generate_token(16))
    return session, url


def code_from(location: str) -> str:
    """The code in the provider's redirect back."""
    return urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]


def test_code_flow_token_logs_in_to_imap_and_a_revoked_one_does_not(provider, portal_client, oauth_dovecot,
                                                                    oauth_mail_user):
    """The whole chain: consent, code + PKCE verifier, token; IMAP XOAUTH2 works until the provider revokes it."""
    verifier = generate_token(48)
    session, url = authorize(provider, portal_client, verifier)
    code = code_from(provider.sign_in(url, oauth_mail_user.email))
    token = session.fetch_token(f"{provider.issuer}/token", code=code, code_verifier=verifier)
    assert token["refresh_token"] and MAIL_SCOPE in token["scope"].split()
    with oauth_dovecot.connect_with_token(oauth_mail_user.email, token["access_token"]) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    provider.revoke_user(oauth_mail_user.email)
    oauth_dovecot.flush_auth_cache()
    with pytest.raises(LoginError):
        oauth_dovecot.connect_with_token(oauth_mail_user.email, token["access_token"])


def test_password_logins_keep_working_beside_tokens(oauth_dovecot, oauth_mail_user):
    """The passwd-file passdb still takes passwords on the OAuth2 Dovecot."""
    oauth_dovecot.connect(oauth_mail_user.email, oauth_mail_user.password).logout()


def test_expired_token_is_refused_and_a_refreshed_one_works(provider, portal_client, oauth_dovecot,
                                                           oauth_mail_user):
    """A 1-second token fails once expired; the rotated refresh token gives a working one, the old one is dead."""
    provider.access_token_lifetime = 1
    old = provider.issue_token_directly(portal_client, oauth_mail_user.email)
    time.sleep(1.5)
    with pytest.raises(LoginError):
        oauth_dovecot.connect_with_token(oauth_mail_user.email, old.access_token)
    response = requests.post(f"{provider.issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": old.refresh_token, "client_id": portal_client.client_id,
        "client_secret": portal_client.client_secret}, timeout=10)
    fresh = response.json()
    assert fresh["refresh_token"] != old.refresh_token
    oauth_dovecot.connect_with_token(oauth_mail_user.email, fresh["access_token"]).logout()
    reused = requests.post(f"{provider.issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": old.refresh_token, "client_id": portal_client.client_id,
        "client_secret": portal_client.client_secret}, timeout=10)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_token_of_another_user_or_without_the_mail_scope_is_refused(provider, portal_client, oauth_dovecot,
                                                                    oauth_mail_user):
    """Dovecot compares the login name with the token's user and demands the mail scope."""
    other = f"x{oauth_mail_user.email}"
    provider.add_user(other)
    theirs = provider.issue_token_directly(portal_client, other)
    with pytest.raises(LoginError):
        oauth_dovecot.connect_with_token(oauth_mail_user.email, theirs.access_token)
    no_mail = provider.issue_token_directly(portal_client, oauth_mail_user.email, scope="openid email")
    with pytest.raises(LoginError):
        oauth_dovecot.connect_with_token(oauth_mail_user.email, no_mail.access_token)


def test_provider_enforces_pkce(provider, portal_client, oauth_mail_user):
    """A missing or wrong code_verifier is refused at the token endpoint; the right one is then accepted."""
    verifier = generate_token(48)
    session, url = authorize(provider, portal_client, verifier)
    code = code_from(provider.sign_in(url, oauth_mail_user.email))
    base = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "client_id": portal_client.client_id, "client_secret": portal_client.client_secret}
    missing = requests.post(f"{provider.issuer}/token", data=base, timeout=10)
    wrong = requests.post(f"{provider.issuer}/token", data={**base, "code_verifier": generate_token(48)}, timeout=10)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert session.fetch_token(f"{provider.issuer}/token", code=code, code_verifier=verifier)["access_token"]
    replay = requests.post(f"{provider.issuer}/token", data={**base, "code_verifier": verifier}, timeout=10)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")


def test_denied_consent_redirects_back_with_access_denied(provider, portal_client, oauth_mail_user):
    """「拒否」 at the provider sends the user back with error=access_denied and the state."""
    _session, url = authorize(provider, portal_client, generate_token(48))
    location = provider.sign_in(url, oauth_mail_user.email, decision="deny")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert query["error"] == ["access_denied"] and query["state"]


@pytest.mark.parametrize("starttls", [True, False], ids=["submission-starttls", "submissions-tls"])
def test_smtp_xoauth2_through_submission_reaches_the_sink(provider, portal_client, oauth_dovecot, relay_sink,
                                                         oauth_mail_user, starttls):
    """AUTH XOAUTH2 on Dovecot submission is 235 and the message arrives at the sink; a revoked token is 535."""
    token = provider.issue_token_directly(portal_client, oauth_mail_user.email)
    context = oauth_dovecot.ssl_context()

    def connect():
        if starttls:
            smtp = smtplib.SMTP(oauth_dovecot.host, oauth_dovecot.submission_port, timeout=10)
            smtp.starttls(context=context)
            return smtp
        return smtplib.SMTP_SSL(oauth_dovecot.host, oauth_dovecot.submissions_port, context=context, timeout=10)

    marker = generate_token(12)
    with connect() as smtp:
        smtp.ehlo()
        assert "XOAUTH2" in smtp.esmtp_features["auth"].split()
        code, _ = smtp.docmd("AUTH", "XOAUTH2 " + xoauth2(oauth_mail_user.email, token.access_token))
        assert code == 235
        smtp.sendmail(oauth_mail_user.email, ["customer@example.com"],
                      f"From: {oauth_mail_user.email}\r\nTo: customer@example.com\r\nSubject: {marker}\r\n\r\nhi\r\n")
    assert any(marker.encode() in message.data and message.rcpt_tos == ["customer@example.com"]
               for message in relay_sink.messages)
    provider.revoke_user(oauth_mail_user.email)
    with connect() as smtp:
        smtp.ehlo()
        code, _ = smtp.docmd("AUTH", "XOAUTH2 " + xoauth2(oauth_mail_user.email, token.access_token))
        if code == 334:  # the error challenge: answered with an empty line, the server then says 535
            code, _ = smtp.docmd("")
        assert code == 535
