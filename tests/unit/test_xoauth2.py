"""XOAUTH2 details that a real Microsoft or Google server would show but Dovecot cannot."""
import base64
import smtplib

import pytest
from imapclient.exceptions import IMAPClientAbortError

from portal.mailsync.connection import is_token_expiry, smtp_token_error, xoauth2_responder
from portal.oauth.providers import MissingClient, OAuthProvider, provider_app


def test_responder_sends_the_token_first_and_an_empty_line_to_an_error_challenge():
    """Google's protocol: after a JSON error challenge the client answers with an empty line."""
    respond = xoauth2_responder("a@example.jp", "tok")
    assert respond() == "user=a@example.jp\x01auth=Bearer tok\x01\x01"
    assert respond(b"") == respond()
    error = base64.b64decode(base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"mail"}'))
    assert respond(error) == ""


def test_smtp_5_7_139_is_smtp_auth_disabled_with_what_the_admin_must_do():
    """Exchange Online's per-tenant switch gets its own message."""
    error = smtplib.SMTPAuthenticationError(535, b"5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
                                                 b"is disabled for the Tenant.")
    mailbox_error = smtp_token_error(error)
    assert mailbox_error.code == "smtp_auth_disabled" and "認証済み SMTP" in mailbox_error.message
    assert smtp_token_error(smtplib.SMTPAuthenticationError(535, b"5.7.8 bad")).code == "smtp_token"


def test_access_token_expired_bye_is_recognised():
    """Exchange's mid-session drop."""
    assert is_token_expiry(IMAPClientAbortError("BYE Session invalidated - AccessTokenExpired"))
    assert not is_token_expiry(IMAPClientAbortError("BYE server shutting down"))


def test_operator_environment_fills_empty_client_fields_and_the_microsoft_tenant():
    """OAUTH_MICROSOFT_* apply when the preset leaves client fields empty; the preset's own values win."""
    env = {"OAUTH_MICROSOFT_CLIENT_ID": "env-id", "OAUTH_MICROSOFT_CLIENT_SECRET": "env-secret",
           "OAUTH_MICROSOFT_TENANT": "contoso.onmicrosoft.com"}
    app = provider_app(OAuthProvider.MICROSOFT, client_id="", client_secret="", tenant=None, discovery_url=None,
                       extra_scopes=None, environ=env)
    assert (app.client_id, app.tenant) == ("env-id", "contoso.onmicrosoft.com")
    assert app.discovery_url.startswith("https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/")
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in app.scopes and "offline_access" in app.scopes
    own = provider_app(OAuthProvider.MICROSOFT, client_id="own", client_secret="s", tenant=None, discovery_url=None,
                       extra_scopes=None, environ={})
    assert (own.client_id, own.tenant) == ("own", "organizations")
    google = provider_app(OAuthProvider.GOOGLE, client_id="g", client_secret="s", tenant=None, discovery_url=None,
                          extra_scopes=None, environ={})
    assert dict(google.authorize_params) == {"access_type": "offline", "prompt": "consent"}
    assert "https://mail.google.com/" in google.scopes
    with pytest.raises(MissingClient):
        provider_app(OAuthProvider.GOOGLE, client_id="", client_secret="", tenant=None, discovery_url=None,
                     extra_scopes=None, environ={})
