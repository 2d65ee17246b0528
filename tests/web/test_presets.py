"""メールボックスサーバーの推奨設定: list, add, edit, delete and validation."""
import json

import pytest
from bs4 import BeautifulSoup
from cryptography.fernet import Fernet
from sqlalchemy import select

from portal.extensions import db
from portal.mailbox.credentials import secret_box
from portal.mailbox.oauth import preset_secret_context
from portal.models import (AuditLog, AuthMethod, LinkState, MailboxLink, MailboxPreset, Membership, OAuthProvider,
                           Role, Security)
from portal.presets.services import PresetData, create_preset
from portal.secretbox import SecretBox
from tests.factories import TEST_KEY, enable_email, make_account, make_link, make_member

GOOD = {"name": "社内サーバー", "imap_host": "imap.example.co.jp", "imap_port": "993", "imap_security": "ssl",
        "smtp_host": "smtp.example.co.jp", "smtp_port": "587", "smtp_security": "starttls"}


@pytest.fixture
def owner(app):
    """An owner of an account with メール on."""
    account, owner = make_account()
    enable_email(account, owner)
    return owner


def presets():
    """All presets in the database."""
    db.session.expire_all()
    return list(db.session.scalars(select(MailboxPreset)))


def test_add_edit_delete(client, auth, owner):
    """Add with the shared form, edit with the pen, delete through 「はい、削除します」."""
    auth.login_member(owner)
    form = client.get("/settings/mailbox-servers/new").get_data(as_text=True)
    assert "<h1>メールボックスサーバーの推奨設定を追加</h1>" in form and "保存" in form
    client.post("/settings/mailbox-servers/new", data=GOOD)
    [preset] = presets()
    assert (preset.imap_port, preset.smtp_security) == (993, Security.STARTTLS)
    listing = BeautifulSoup(client.get("/settings/mailbox-servers").get_data(as_text=True), "html.parser")
    pen = listing.select_one("a:has(i.bi-pencil)")["href"]
    trash = listing.select_one("a:has(i.bi-trash)")["href"]
    client.post(pen, data=dict(GOOD, name="新しい名前", imap_port="143", imap_security="starttls"))
    assert presets()[0].name == "新しい名前" and presets()[0].imap_port == 143
    confirm = client.get(trash).get_data(as_text=True)
    assert "はい、削除します" in confirm and len(presets()) == 1
    client.post(trash)
    assert presets() == []


@pytest.mark.parametrize("change,message", [
    ({"imap_host": ""}, "入力してください。"),
    ({"smtp_host": "bad host!"}, "ホスト名の形式が正しくありません。"),
    ({"imap_port": "70000"}, "ポート番号は1〜65535の範囲で入力してください。"),
    ({"imap_port": "abc"}, "ポート番号は半角数字で入力してください。"),
    ({"smtp_port": "8080"}, "メール用のポート番号"),
    ({"imap_security": "tls13"}, "選択肢から選んでください。"),
    ({"smtp_security": "none"}, "暗号化なしの接続は許可されていません。"),
])
def test_bad_values_are_japanese_form_errors(client, auth, owner, change, message):
    """Each bad value is explained beside its field and nothing is saved."""
    auth.login_member(owner)
    response = client.post("/settings/mailbox-servers/new", data=dict(GOOD, **change))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert presets() == []


def test_plaintext_allowed_when_operator_says_so(make_app):
    """MAIL_ALLOW_PLAINTEXT=1 lets presets use security none (for local test servers)."""
    app = make_app(MAIL_ALLOW_PLAINTEXT=True)
    client = app.test_client()
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        email = owner.user.email
    client.post("/login", data={"email": email, "password": "correct-horse-battery"})
    response = client.post("/settings/mailbox-servers/new", data=dict(GOOD, smtp_port="25", smtp_security="none"))
    assert response.status_code == 302


def test_plain_user_sees_list_without_icons(client, auth, owner):
    """A plain user reads the presets but gets no pen or trash."""
    client_owner_account = owner.account
    user = make_member(client_owner_account, Role.USER)
    auth.login_member(owner)
    client.post("/settings/mailbox-servers/new", data=GOOD)
    auth.logout()
    auth.login_member(user)
    page = client.get("/settings/mailbox-servers").get_data(as_text=True)
    assert "社内サーバー" in page and "bi-pencil" not in page and "bi-trash" not in page


def test_deleting_a_preset_keeps_links_made_with_it(client, auth, owner):
    """A link keeps its own copy of the server settings."""
    auth.login_member(owner)
    client.post("/settings/mailbox-servers/new", data=GOOD)
    [preset] = presets()
    link = make_link(owner)
    client.post(f"/settings/mailbox-servers/{preset.id}/delete")
    db.session.expire_all()
    assert presets() == [] and link.state == LinkState.ACTIVE and link.imap_host == "127.0.0.1"


def test_screens_explain_when_email_feature_is_off(client, auth):
    """While メール is off, mailbox screens explain it and link to 機能契約; nothing can be saved."""
    account, owner = make_account()
    auth.login_member(owner)
    for path in ("/settings/mailbox-servers", "/settings/mailbox"):
        page = client.get(path).get_data(as_text=True)
        assert "メール機能がオフになっています" in page and "/settings/features" in page
    assert client.post("/settings/mailbox-servers/new", data=GOOD).status_code == 409
    assert presets() == []


# ---- OAuth2 presets ----

SECRET = "Xy7~secret.value-never-shown"
MICROSOFT = {"name": "Microsoft 365", "auth_method": "oauth2", "oauth_provider": "microsoft", "oauth_tenant": "",
             "oauth_discovery_url": "", "oauth_scopes": "", "oauth_client_id": "11111111-2222-3333-4444-555555555555",
             "oauth_client_secret": SECRET, "imap_host": "", "imap_port": "", "imap_security": "ssl",
             "smtp_host": "", "smtp_port": "", "smtp_security": "ssl"}
OIDC_URL = "https://127.0.0.1/.well-known/openid-configuration"


def oauth_app(make_app, **config):
    """(app, signed-in client, owner id) for an account with メール on; loopback opened for provider URLs."""
    app = make_app(MAIL_ALLOWED_NETWORKS="127.0.0.0/8", PUBLIC_BASE_URL="https://crm.example.jp", **config)
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        email, owner_id = owner.user.email, owner.id
    client = app.test_client()
    client.post("/login", data={"email": email, "password": "correct-horse-battery"})
    return app, client, owner_id


def stored(app) -> MailboxPreset:
    """The one preset, read fresh."""
    with app.app_context():
        preset = db.session.scalar(select(MailboxPreset))
        db.session.expunge_all()
        return preset


def decrypted_secret(app, preset) -> str:
    """The stored client secret, decrypted with its row-bound context."""
    with app.app_context():
        return secret_box(app.config).decrypt(preset.oauth_client_secret_encrypted, preset_secret_context(preset.id))


@pytest.mark.parametrize("provider,imap,smtp", [
    ("microsoft", ("outlook.office365.com", 993, Security.SSL), ("smtp.office365.com", 587, Security.STARTTLS)),
    ("google", ("imap.gmail.com", 993, Security.SSL), ("smtp.gmail.com", 587, Security.STARTTLS)),
])
def test_oauth_preset_gets_the_providers_servers_and_an_encrypted_secret(make_app, provider, imap, smtp):
    """Servers left empty come filled in; the secret is stored encrypted, bound to the row; the list says OAuth2."""
    app, client, _ = oauth_app(make_app)
    response = client.post("/settings/mailbox-servers/new", data=dict(MICROSOFT, oauth_provider=provider))
    assert response.status_code == 302, response.get_data(as_text=True)
    preset = stored(app)
    assert (preset.auth_method, preset.oauth_provider) == (AuthMethod.OAUTH2, OAuthProvider(provider))
    assert (preset.imap_host, preset.imap_port, preset.imap_security) == imap
    assert (preset.smtp_host, preset.smtp_port, preset.smtp_security) == smtp
    assert SECRET not in preset.oauth_client_secret_encrypted and decrypted_secret(app, preset) == SECRET
    assert preset.oauth_tenant is None  # organizations (or the operator's tenant) when signing in
    label = {"microsoft": "OAuth2: Microsoft 365", "google": "OAuth2: Google Workspace"}[provider]
    assert label in client.get("/settings/mailbox-servers").get_data(as_text=True)


def test_the_secret_never_shows_again_and_an_empty_field_keeps_it(make_app):
    """The edit form says 設定済み; an empty secret keeps the stored one, a new one replaces it."""
    app, client, _ = oauth_app(make_app)
    client.post("/settings/mailbox-servers/new", data=dict(MICROSOFT, oauth_tenant="contoso.onmicrosoft.com"))
    preset = stored(app)
    page = client.get(f"/settings/mailbox-servers/{preset.id}/edit").get_data(as_text=True)
    assert "設定済み（変更する場合のみ入力）" in page and SECRET not in page
    form = BeautifulSoup(page, "html.parser")
    assert form.select_one("#oauth_client_secret").get("value", "") == ""
    assert form.select_one("#oauth_tenant")["value"] == "contoso.onmicrosoft.com"
    edited = dict(MICROSOFT, name="改名", oauth_client_secret="", oauth_tenant="contoso.onmicrosoft.com")
    assert client.post(f"/settings/mailbox-servers/{preset.id}/edit", data=edited).status_code == 302
    assert stored(app).name == "改名" and decrypted_secret(app, stored(app)) == SECRET
    client.post(f"/settings/mailbox-servers/{preset.id}/edit", data=dict(edited, oauth_client_secret="new-secret"))
    assert decrypted_secret(app, stored(app)) == "new-secret"


def test_the_secret_is_in_no_page_and_no_audit_entry(make_app):
    """Not in the list, the edit form, a re-shown form with errors, nor any audit entry's details."""
    app, client, _ = oauth_app(make_app)
    client.post("/settings/mailbox-servers/new", data=MICROSOFT)
    preset = stored(app)
    client.post(f"/settings/mailbox-servers/{preset.id}/edit", data=dict(MICROSOFT, oauth_client_secret="second-" + SECRET))
    rejected = client.post("/settings/mailbox-servers/new", data=dict(MICROSOFT, name=""))
    assert rejected.status_code == 422
    pages = [rejected.get_data(as_text=True)] + [client.get(path).get_data(as_text=True) for path in (
        "/settings/mailbox-servers", f"/settings/mailbox-servers/{preset.id}/edit", "/settings/audit")]
    with app.app_context():
        entries = list(db.session.scalars(select(AuditLog).where(AuditLog.action.like("mailbox_preset.%"))))
        details = [json.dumps(entry.details, ensure_ascii=False) for entry in entries]
    assert len(entries) == 2 and all("oauth_client_secret_changed" in d for d in details)
    for text in pages + details:
        assert SECRET not in text


@pytest.mark.parametrize("change,field,message", [
    ({"oauth_client_id": ""}, "oauth_client_id", "クライアントIDを入力してください。"),
    ({"oauth_client_secret": ""}, "oauth_client_secret", "クライアントシークレットを入力してください。"),
    ({"oauth_client_id": "", "oauth_client_secret": "x"}, "oauth_client_secret", "シークレットだけを入力"),
    ({"oauth_client_id": "id\x00nul"}, "oauth_client_id", "使用できない文字"),
    ({"oauth_tenant": "../common"}, "oauth_tenant", "テナントの形式が正しくありません"),
    ({"oauth_provider": "yahoo"}, "oauth_provider", "選択肢から選んでください。"),
    ({"oauth_provider": "oidc"}, "oauth_discovery_url", "ディスカバリーURLを入力してください。"),
    ({"oauth_provider": "oidc", "oauth_discovery_url": "http://127.0.0.1/.well-known/openid-configuration"},
     "oauth_discovery_url", "https:// で始まる必要があります"),
    ({"oauth_provider": "oidc", "oauth_discovery_url": "https://user:pw@127.0.0.1/"},
     "oauth_discovery_url", "https:// で始まる必要があります"),
    ({"oauth_provider": "oidc", "oauth_discovery_url": OIDC_URL, "oauth_scopes": 'mail "imap"'},
     "oauth_scopes", "スコープは半角英数字と記号"),
    ({"oauth_client_secret": "x" * 2001}, "oauth_client_secret", "2000文字以内"),
])
def test_oauth_fields_are_checked_in_japanese(make_app, change, field, message):
    """Each unusable OAuth2 value is explained beside its field and nothing is saved."""
    app, client, _ = oauth_app(make_app)
    response = client.post("/settings/mailbox-servers/new", data=dict(MICROSOFT, **change))
    assert response.status_code == 422
    errors = BeautifulSoup(response.get_data(as_text=True), "html.parser").select_one(f"#{field}").find_parent("div")
    assert message in errors.get_text()
    assert stored(app) is None


def test_http_discovery_url_only_for_an_opened_local_test_server(make_app):
    """http:// is accepted only with MAIL_ALLOW_PLAINTEXT and a host on MAIL_ALLOWED_NETWORKS; https on loopback
    needs the network opened too."""
    data = dict(MICROSOFT, oauth_provider="oidc", oauth_discovery_url="http://127.0.0.1:8080/.well-known/x",
                oauth_scopes="mail.imap mail.imap", imap_host="imap.example.jp", imap_port="993",
                smtp_host="smtp.example.jp", smtp_port="587", smtp_security="starttls")
    app, client, _ = oauth_app(make_app, MAIL_ALLOW_PLAINTEXT=True)
    assert client.post("/settings/mailbox-servers/new", data=data).status_code == 302
    preset = stored(app)
    assert (preset.oauth_discovery_url, preset.oauth_scopes, preset.oauth_tenant) == (
        "http://127.0.0.1:8080/.well-known/x", "mail.imap", None)
    closed = make_app(MAIL_ALLOW_PLAINTEXT=True, MAIL_ALLOWED_NETWORKS="")  # loopback not opened
    with closed.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        email = owner.user.email
    other = closed.test_client()
    other.post("/login", data={"email": email, "password": "correct-horse-battery"})
    response = other.post("/settings/mailbox-servers/new", data=dict(data, oauth_discovery_url=OIDC_URL))
    assert response.status_code == 422 and "アドレスには接続できません" in response.get_data(as_text=True)


def test_operator_app_lets_the_client_fields_stay_empty(make_app):
    """With OAUTH_MICROSOFT_* set, the form says so and a preset without client fields is saved."""
    app, client, _ = oauth_app(make_app, OAUTH_MICROSOFT_CLIENT_ID="operator-id",
                               OAUTH_MICROSOFT_CLIENT_SECRET="operator-secret")
    page = client.get("/settings/mailbox-servers/new").get_data(as_text=True)
    assert "Microsoft 365 用の共通アプリを設定しています" in page and "operator-secret" not in page
    data = dict(MICROSOFT, oauth_client_id="", oauth_client_secret="")
    assert client.post("/settings/mailbox-servers/new", data=data).status_code == 302
    preset = stored(app)
    assert (preset.oauth_client_id, preset.oauth_client_secret_encrypted) == (None, "")
    assert "共通アプリ" in client.get("/settings/mailbox-servers").get_data(as_text=True)
    # Google has no operator app here: its client fields stay required.
    response = client.post("/settings/mailbox-servers/new", data=dict(data, oauth_provider="google"))
    assert response.status_code == 422 and "クライアントIDを入力してください。" in response.get_data(as_text=True)


def test_redirect_uri_and_how_to_are_shown(make_app):
    """The exact redirect URI from PUBLIC_BASE_URL, and each provider's how-to."""
    app, client, _ = oauth_app(make_app)
    page = BeautifulSoup(client.get("/settings/mailbox-servers/new").get_data(as_text=True), "html.parser")
    assert page.select_one("#redirect-uri")["value"] == "https://crm.example.jp/settings/mailbox/oauth/callback"
    text = page.get_text()
    for words in ("IMAP.AccessAsUser.All", "SMTP.Send", "offline_access", "管理者の同意", "SmtpClientAuthenticationDisabled",
                  "シングルテナント", "有効期限", "「内部」", "7日", "https://mail.google.com/", "ウェブ アプリケーション",
                  "IMAP アクセスを許可"):
        assert words in text, words
    assert page.select_one('script[src$="js/preset-form.js"]') is not None
    microsoft = page.select_one("#oauth_provider option[value=microsoft]")
    assert (microsoft["data-imap-host"], microsoft["data-smtp-port"], microsoft["data-smtp-security"]) == (
        "outlook.office365.com", "587", "starttls")


def test_without_public_base_url_the_screen_says_an_operator_must_set_it(client, auth, owner):
    """No redirect URI to register yet: the screen says who must set what first."""
    auth.login_member(owner)
    page = BeautifulSoup(client.get("/settings/mailbox-servers/new").get_data(as_text=True), "html.parser")
    assert page.select_one("#redirect-uri") is None
    assert "ポータルの公開URLがまだ設定されていない" in page.get_text() and "サーバー管理者" in page.get_text()


def _oauth_link(app, owner_id, preset_id, state=LinkState.ACTIVE):
    """A link of the owner that signs in through the preset's client app."""
    with app.app_context():
        link = make_link(db.session.get(Membership, owner_id))
        link.auth_method, link.preset_id, link.state = AuthMethod.OAUTH2, preset_id, state
        db.session.commit()
        return link.id


@pytest.mark.parametrize("state", [LinkState.ACTIVE, LinkState.REAUTH, LinkState.ERROR])
def test_a_preset_that_oauth_links_use_cannot_be_deleted(make_app, state):
    """Refused with the reason, before and after confirming; once unlinked, it deletes and history loses the id."""
    app, client, owner_id = oauth_app(make_app)
    client.post("/settings/mailbox-servers/new", data=MICROSOFT)
    preset = stored(app)
    link_id = _oauth_link(app, owner_id, preset.id, state)
    confirm = client.get(f"/settings/mailbox-servers/{preset.id}/delete").get_data(as_text=True)
    assert "削除できません" in confirm and "はい、削除します" not in confirm
    response = client.post(f"/settings/mailbox-servers/{preset.id}/delete")
    assert response.status_code == 409 and "1件" in response.get_data(as_text=True)
    assert stored(app) is not None
    assert client.post("/settings/mailbox/unlink").status_code == 302
    assert client.post(f"/settings/mailbox-servers/{preset.id}/delete").status_code == 302
    assert stored(app) is None
    with app.app_context():
        link = db.session.get(MailboxLink, link_id)
        assert (link.state, link.preset_id) == (LinkState.UNLINKED, None)


def test_method_and_provider_stay_while_links_use_the_preset_but_the_secret_can_change(make_app):
    """Switching to password or another provider would strand the links: refused; a new secret is fine."""
    app, client, owner_id = oauth_app(make_app)
    client.post("/settings/mailbox-servers/new", data=MICROSOFT)
    preset = stored(app)
    _oauth_link(app, owner_id, preset.id)
    for change in ({"auth_method": "password", "imap_host": "imap.example.jp", "imap_port": "993",
                    "smtp_host": "smtp.example.jp", "smtp_port": "587"}, {"oauth_provider": "google"}):
        response = client.post(f"/settings/mailbox-servers/{preset.id}/edit", data=dict(MICROSOFT, **change))
        assert response.status_code == 409 and "認証方式とプロバイダーは変更できません" in response.get_data(as_text=True)
        assert stored(app).oauth_provider == OAuthProvider.MICROSOFT
    edited = dict(MICROSOFT, oauth_client_secret="rotated-secret")
    assert client.post(f"/settings/mailbox-servers/{preset.id}/edit", data=edited).status_code == 302
    assert decrypted_secret(app, stored(app)) == "rotated-secret"


def test_back_to_password_forgets_the_oauth_settings(make_app):
    """A preset turned into a password preset keeps no client ID or secret."""
    app, client, _ = oauth_app(make_app)
    client.post("/settings/mailbox-servers/new", data=MICROSOFT)
    preset = stored(app)
    data = dict(GOOD, auth_method="password", oauth_provider="microsoft", oauth_client_id="ignored",
                oauth_tenant="../bad")
    assert client.post(f"/settings/mailbox-servers/{preset.id}/edit", data=data).status_code == 302
    preset = stored(app)
    assert (preset.auth_method, preset.oauth_provider, preset.oauth_client_id, preset.oauth_tenant,
            preset.oauth_client_secret_encrypted) == (AuthMethod.PASSWORD, None, None, None, "")
    assert "パスワード" in client.get("/settings/mailbox-servers").get_data(as_text=True)


def test_plain_user_cannot_create_an_oauth_preset(make_app):
    """403 for a plain member, and nothing stored."""
    app, client, owner_id = oauth_app(make_app)
    with app.app_context():
        user = make_member(db.session.get(Membership, owner_id).account, Role.USER)
        email = user.user.email
    member = app.test_client()
    member.post("/login", data={"email": email, "password": "correct-horse-battery"})
    assert member.post("/settings/mailbox-servers/new", data=MICROSOFT).status_code == 403
    assert stored(app) is None


def test_rotate_key_command_reencrypts_client_secrets(make_app):
    """After rotate-mailbox-key a preset's client secret decrypts with the new key alone."""
    new_key = Fernet.generate_key().decode()
    app = make_app(MAILBOX_ENCRYPTION_KEY=new_key, MAILBOX_ENCRYPTION_OLD_KEYS=[TEST_KEY])
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        data = PresetData("M365", "outlook.office365.com", 993, Security.SSL, "smtp.office365.com", 587,
                          Security.STARTTLS, AuthMethod.OAUTH2, OAuthProvider.MICROSOFT,
                          oauth_client_id="client", oauth_client_secret=SECRET)
        preset = create_preset(db.session, owner, data, SecretBox(TEST_KEY))
        result = app.test_cli_runner().invoke(args=["rotate-mailbox-key"])
        assert "1件の推奨設定のクライアントシークレット" in result.output
        db.session.expire_all()
        assert SecretBox(new_key).decrypt(preset.oauth_client_secret_encrypted,
                                          preset_secret_context(preset.id)) == SECRET
