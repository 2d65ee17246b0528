"""Linking a mailbox by OAuth2 through the real screens: a real OpenID provider and a Dovecot taking only tokens."""
import time
import urllib.parse

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.mailbox import oauth as oauth_module
from portal.mailbox.oauth import token_context
from portal.mailbox.credentials import secret_box
from portal.models import Account, AuthMethod, LinkState, Membership, MailboxLink, MailboxPreset, Role
from portal.presets.services import delete_preset
from tests.factories import PASSWORD, make_account, make_member
from tests.integration.oauth_world import REDIRECT_URI, come_back, make_oauth_preset, start
from tests.integration.oidc_provider import MAIL_SCOPE


def link_count(app) -> int:
    """How many links exist (any state)."""
    with app.app_context():
        return db.session.scalar(select(func.count(MailboxLink.id)))


def test_sign_in_links_the_mailbox_with_encrypted_tokens(oauth_portal, provider, oauth_mail_user):
    """One button: PKCE S256 + state + nonce; back on the portal the link is 連携中 with verified folders."""
    app, client, *_, preset_id = oauth_portal
    url = start(client, preset_id)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    assert query["redirect_uri"] == [REDIRECT_URI] and MAIL_SCOPE in query["scope"][0].split()
    response = come_back(client, provider.sign_in(url, oauth_mail_user.email))
    assert response.status_code == 302 and response.headers["Location"].endswith("/settings/mailbox")
    page = client.get("/settings/mailbox").get_data(as_text=True)
    assert "連携中" in page and oauth_mail_user.email in page and "OAuth2" in page
    with app.app_context():
        link = db.session.scalar(select(MailboxLink))
        assert (link.auth_method, link.state, link.email) == (AuthMethod.OAUTH2, LinkState.ACTIVE,
                                                              oauth_mail_user.email.lower())
        assert {folder.role.value for folder in link.folders} == {"inbox", "sent"}
        box = secret_box(app.config)
        refresh = box.decrypt(link.oauth_refresh_token_encrypted, token_context(link.id, "oauth_refresh_token"))
        assert refresh in provider.live_refresh_tokens(oauth_mail_user.email)
        assert refresh not in link.oauth_refresh_token_encrypted and link.imap_password_encrypted == ""
        assert link.oauth_expires_at is not None


def refused_page(response) -> str:
    """The refusal's message (status 400/502)."""
    assert response.status_code in (400, 502), response.status_code
    return response.get_data(as_text=True)


def test_state_mismatch_and_a_replayed_callback_are_refused(oauth_portal, provider, oauth_mail_user):
    """A wrong state stores nothing; the state is single use, so replaying a good callback is refused too."""
    app, client, *_, preset_id = oauth_portal
    location = provider.sign_in(start(client, preset_id), oauth_mail_user.email)
    tampered = location.replace("state=", "state=x")
    assert "サインインの手続きを確認できませんでした" in refused_page(come_back(client, tampered))
    assert link_count(app) == 0
    location = provider.sign_in(start(client, preset_id), oauth_mail_user.email)
    assert come_back(client, location).status_code == 302
    assert "サインインの手続きを確認できませんでした" in refused_page(come_back(client, location))
    assert link_count(app) == 1


def test_an_injected_code_fails_the_pkce_check_at_the_provider(oauth_portal, make_app, provider, oauth_mail_user):
    """A code from another browser's flow, delivered with this session's state: the verifier does not match."""
    app, client, *_, preset_id = oauth_portal
    attacker = app.test_client()
    # The attacker (same provider app) starts their own flow and keeps the code.
    attacker.post("/login", data={"email": _owner(app, oauth_portal[2]), "password": PASSWORD})
    attacker_location = provider.sign_in(start(attacker, preset_id), oauth_mail_user.email)
    attacker_code = urllib.parse.parse_qs(urllib.parse.urlsplit(attacker_location).query)["code"][0]
    victim_location = provider.sign_in(start(client, preset_id), oauth_mail_user.email)
    victim_state = urllib.parse.parse_qs(urllib.parse.urlsplit(victim_location).query)["state"][0]
    injected = f"{REDIRECT_URI}?code={attacker_code}&state={victim_state}"
    assert "認可コードを受け付けませんでした" in refused_page(come_back(client, injected))
    assert link_count(app) == 0


def _owner(app, account_id):
    """The owner's sign-in address."""
    with app.app_context():
        return db.session.scalar(select(Membership).where(Membership.account_id == account_id,
                                                          Membership.role == Role.OWNER)).user.email


@pytest.mark.parametrize("case", ["denied", "no_mail_scope", "other_audience"])
def test_refusals_store_nothing(oauth_portal, provider, oauth_mail_user, case):
    """Consent denied, the mail scope unticked, an ID token for another audience: a Japanese message, no link."""
    app, client, *_, preset_id = oauth_portal
    url = start(client, preset_id)
    if case == "denied":
        location, expected = provider.sign_in(url, oauth_mail_user.email, decision="deny"), "キャンセルされました"
    elif case == "no_mail_scope":
        location = provider.sign_in(url, oauth_mail_user.email, granted_scopes=["openid", "email", "offline_access"])
        expected = "メールへのアクセスが許可されていません"
    else:
        provider.id_token_audience = "another-client"
        location, expected = provider.sign_in(url, oauth_mail_user.email), "IDトークンを検証できません"
    assert expected in refused_page(come_back(client, location))
    assert link_count(app) == 0
    assert provider.live_refresh_tokens(oauth_mail_user.email) == []  # what was issued is given back


def test_another_accounts_preset_is_404(oauth_portal, provider, oauth_dovecot):
    """A preset id from another account does not exist for this member."""
    app, client, *_ = oauth_portal
    with app.app_context():
        other, _ = make_account()
        foreign = make_oauth_preset(other, provider, oauth_dovecot).id
    assert client.post("/settings/mailbox/oauth/start", data={"preset_id": str(foreign)}).status_code == 404
    assert client.post("/settings/mailbox/oauth/start", data={"preset_id": str(2 ** 40)}).status_code == 404


def test_plain_member_links_own_mailbox_and_unlink_revokes_the_token(oauth_portal, provider, oauth_mail_user):
    """A plain user may link their own mailbox; unlinking wipes both tokens and revokes at the provider."""
    app, _, account_id, _, preset_id = oauth_portal
    with app.app_context():
        member = make_member(db.session.get(Account, account_id), Role.USER)
        email = member.user.email
    client = app.test_client()
    client.post("/login", data={"email": email, "password": PASSWORD})
    come_back(client, provider.sign_in(start(client, preset_id), oauth_mail_user.email))
    assert len(provider.live_refresh_tokens(oauth_mail_user.email)) == 1
    assert client.post("/settings/mailbox/unlink").status_code == 302
    deadline = time.monotonic() + 10
    while provider.live_refresh_tokens(oauth_mail_user.email) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider.live_refresh_tokens(oauth_mail_user.email) == []
    with app.app_context():
        link = db.session.scalar(select(MailboxLink))
        assert link.state == LinkState.UNLINKED
        assert (link.oauth_access_token_encrypted, link.oauth_refresh_token_encrypted) == ("", "")


def test_the_preset_of_a_live_oauth_link_stays_until_the_link_is_gone(oauth_portal, provider, oauth_mail_user):
    """Deleting the preset a link signs in through is refused (409); after unlinking (and the revocation that
    still needs the preset's app) it deletes."""
    app, client, *_, preset_id = oauth_portal
    assert come_back(client, provider.sign_in(start(client, preset_id), oauth_mail_user.email)).status_code == 302
    response = client.post(f"/settings/mailbox-servers/{preset_id}/delete")
    assert response.status_code == 409 and "削除できません" in response.get_data(as_text=True)
    assert client.post("/settings/mailbox/unlink").status_code == 302
    deadline = time.monotonic() + 10
    while provider.live_refresh_tokens(oauth_mail_user.email) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider.live_refresh_tokens(oauth_mail_user.email) == []
    assert client.post(f"/settings/mailbox-servers/{preset_id}/delete").status_code == 302
    with app.app_context():
        assert db.session.get(MailboxPreset, preset_id) is None
        assert db.session.scalar(select(MailboxLink)).preset_id is None


def test_without_public_base_url_sign_in_is_refused_with_the_reason(oauth_portal, provider, oauth_mail_user):
    """No PUBLIC_BASE_URL: the form says why and its button is disabled, a start is refused (409) without going
    to the provider, and a flow begun before the setting was removed cannot finish; nothing is linked."""
    app, client, *_, preset_id = oauth_portal
    location = provider.sign_in(start(client, preset_id), oauth_mail_user.email)
    app.config["PUBLIC_BASE_URL"] = None
    page = BeautifulSoup(client.get("/settings/mailbox").get_data(as_text=True), "html.parser")
    assert "PUBLIC_BASE_URL" in page.select_one("#oauth-unavailable").get_text()
    assert page.select_one("#oauth-link button[type=submit]").has_attr("disabled")
    response = client.post("/settings/mailbox/oauth/start", data={"preset_id": str(preset_id)})
    assert response.status_code == 409 and "サーバー管理者" in response.get_data(as_text=True)
    assert "Location" not in response.headers
    response = come_back(client, location)
    assert response.status_code == 409 and "PUBLIC_BASE_URL" in response.get_data(as_text=True)
    assert link_count(app) == 0


def test_a_preset_deleted_while_the_link_is_checked_gives_a_message_not_a_500(oauth_portal, provider,
                                                                               oauth_mail_user, monkeypatch):
    """The owner deletes the preset in the seconds the new link's servers are checked: the member gets a Japanese
    message (no foreign-key 500), nothing is linked, and the issued token is given back."""
    app, client, account_id, owner_id, preset_id = oauth_portal
    real_link = oauth_module.link_oauth_mailbox

    def link_while_the_preset_is_deleted(*args):
        """The route's own link call, its server check followed by the owner's deletion."""
        *rest, route_verifier = args

        def delete_during_the_check(imap, smtp, policy):
            snapshots = route_verifier(imap, smtp, policy)
            with Session(db.engine) as other:  # another request, committed while this one is still working
                delete_preset(other, other.get(Membership, owner_id), other.get(MailboxPreset, preset_id))
            return snapshots
        return real_link(*rest, delete_during_the_check)

    monkeypatch.setattr(oauth_module, "link_oauth_mailbox", link_while_the_preset_is_deleted)
    response = come_back(client, provider.sign_in(start(client, preset_id), oauth_mail_user.email))
    assert "選んだ推奨設定が削除されました" in refused_page(response)
    assert link_count(app) == 0
    with app.app_context():
        assert db.session.get(MailboxPreset, preset_id) is None
    deadline = time.monotonic() + 10
    while provider.live_refresh_tokens(oauth_mail_user.email) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider.live_refresh_tokens(oauth_mail_user.email) == []


def test_pages_with_a_sign_in_button_let_the_form_end_at_the_provider(oauth_portal, provider):
    """Browsers apply the page's CSP form-action to the redirects of a form post: the link form allows the
    provider's origin (and only there is it widened), or 「… でサインインして連携」 would stop at the portal."""
    _, client, *_ = oauth_portal
    policy = client.get("/settings/mailbox").headers["Content-Security-Policy"]
    assert f"form-action 'self' {provider.issuer};" in policy
    assert "form-action 'self';" in client.get("/settings").headers["Content-Security-Policy"]
