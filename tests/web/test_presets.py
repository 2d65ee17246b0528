"""メールボックスサーバーの推奨設定: list, add, edit, delete and validation."""
import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.extensions import db
from portal.models import LinkState, MailboxPreset, Role, Security
from tests.factories import enable_email, make_account, make_link, make_member

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
    assert "メールボックスサーバーの推奨設定を追加/編集" in form and "保存" in form
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
