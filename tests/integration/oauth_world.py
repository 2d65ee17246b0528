"""The OAuth2 test world shared by the linking and token tests: a preset on the test provider, the signed-in
portal, and the browser's steps of the code flow (press the button, come back through the callback)."""
import urllib.parse

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuthMethod, MailboxPreset, Membership, OAuthProvider, Role, Security
from portal.presets.services import PresetData, create_preset
from portal.secretbox import SecretBox
from tests.factories import PASSWORD, TEST_KEY, enable_email, make_account
from tests.integration.oidc_provider import MAIL_SCOPE

PUBLIC_BASE_URL = "http://portal.test"
REDIRECT_URI = PUBLIC_BASE_URL + "/settings/mailbox/oauth/callback"


def preset_form(provider, oauth_dovecot, client, name="テストOIDC") -> dict:
    """The 推奨設定 form for an OAuth2 (OpenID Connect) preset on the test provider and the OAuth Dovecot."""
    return {"name": name, "auth_method": "oauth2", "oauth_provider": "oidc", "oauth_tenant": "",
            "oauth_discovery_url": provider.discovery_url, "oauth_scopes": MAIL_SCOPE,
            "oauth_client_id": client.client_id, "oauth_client_secret": client.client_secret,
            "imap_host": "127.0.0.1", "imap_port": str(oauth_dovecot.imaps_port), "imap_security": "ssl",
            "smtp_host": "127.0.0.1", "smtp_port": str(oauth_dovecot.submission_port), "smtp_security": "starttls"}


def make_oauth_preset(account, provider, oauth_dovecot, client=None, name="テストOIDC"):
    """An OAuth2 (OpenID Connect) preset added by the account's owner through the preset service."""
    client = client or provider.register_client([REDIRECT_URI])
    owner = db.session.scalar(select(Membership).where(Membership.account_id == account.id,
                                                       Membership.role == Role.OWNER))
    data = PresetData(name=name, imap_host="127.0.0.1", imap_port=oauth_dovecot.imaps_port,
                      imap_security=Security.SSL, smtp_host="127.0.0.1", smtp_port=oauth_dovecot.submission_port,
                      smtp_security=Security.STARTTLS, auth_method=AuthMethod.OAUTH2,
                      oauth_provider=OAuthProvider.OIDC, oauth_discovery_url=provider.discovery_url,
                      oauth_scopes=MAIL_SCOPE, oauth_client_id=client.client_id,
                      oauth_client_secret=client.client_secret)
    return create_preset(db.session, owner, data, SecretBox(TEST_KEY))


@pytest.fixture
def oauth_portal(make_app, pki, provider, oauth_dovecot):
    """(app, client, account, owner, preset) with the owner signed in; the provider and Dovecot on loopback.

    The owner adds the preset on the 推奨設定 screen, as a company admin would."""
    app = make_app(MAIL_CA_FILE=str(pki.ca_file), MAIL_TIMEOUT_SECONDS=10, PUBLIC_BASE_URL=PUBLIC_BASE_URL,
                   MAIL_EXTRA_PORTS=[oauth_dovecot.imaps_port, oauth_dovecot.submission_port],
                   MAIL_ALLOW_PLAINTEXT=True, MAIL_ALLOWED_NETWORKS="127.0.0.0/8")
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        ids = account.id, owner.id, owner.user.email
    client = app.test_client()
    client.post("/login", data={"email": ids[2], "password": PASSWORD})
    form = preset_form(provider, oauth_dovecot, provider.register_client([REDIRECT_URI]))
    saved = client.post("/settings/mailbox-servers/new", data=form)
    assert saved.status_code == 302, saved.get_data(as_text=True)[:2000]
    with app.app_context():
        preset_id = db.session.scalar(select(MailboxPreset.id).where(MailboxPreset.account_id == ids[0]))
    return app, client, ids[0], ids[1], preset_id


def start(client, preset_id=None):
    """Press 「… でサインインして連携」 (or 「再度サインインして連携」 without a preset); returns the provider URL."""
    data = {"preset_id": str(preset_id)} if preset_id is not None else {}
    response = client.post("/settings/mailbox/oauth/start", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response.headers["Location"]


def come_back(client, location):
    """Follow the provider's redirect back to the portal's callback."""
    parts = urllib.parse.urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT_URI
    return client.get(f"{parts.path}?{parts.query}")
