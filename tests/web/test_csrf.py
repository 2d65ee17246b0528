"""With CSRF protection on (as in production), every POST without a token is refused with 400."""
import pytest
from bs4 import BeautifulSoup
from sqlalchemy import func, select
from werkzeug.routing.converters import AnyConverter

from portal.extensions import db
from portal.presets.services import PresetData, create_preset
from portal.models import Account, AccountStatus, AuditLog, Customer, LoginSession, MailboxPreset, Role, Security
from tests.factories import PASSWORD, make_account, make_customer, make_member


@pytest.fixture
def csrf_app(make_app):
    """An app with CSRF checks on."""
    return make_app(WTF_CSRF_ENABLED=True)


def login_with_token(client, email: str) -> None:
    """Sign in through the real form, token included."""
    page = BeautifulSoup(client.get("/login").get_data(as_text=True), "html.parser")
    token = page.find("input", {"name": "csrf_token"})["value"]
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302


def post_urls(app, ids: dict) -> list[str]:
    """Every POST route of the app, once per allowed value of <any(...)> parts, ids filled in."""
    urls = []
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods:
            continue
        choices = [{}]
        for name in rule.arguments:
            converter = rule._converters[name]
            # CSRF is checked before any view runs, so a route whose object the test did not build gets any id.
            values = sorted(converter.items) if isinstance(converter, AnyConverter) else [ids.get(name, 1)]
            choices = [dict(choice, **{name: value}) for choice in choices for value in values]
        urls.extend(rule.build(choice, append_unknown=False)[1] for choice in choices)
    return urls


def test_every_post_without_token_is_400(csrf_app):
    """No form can be submitted from another site: 400, a Japanese page, and nothing changes."""
    client = csrf_app.test_client()
    with csrf_app.app_context():
        account, owner = make_account()
        customer = make_customer(account)
        member = make_member(account, Role.USER)
        email = owner.user.email
        preset = create_preset(db.session, owner, PresetData("社内", "mail.example.jp", 993, Security.SSL,
                                                             "mail.example.jp", 587, Security.STARTTLS))
        ids = {"customer_id": customer.id, "membership_id": member.id, "preset_id": preset.id,
               "feature": "email"}
        urls = post_urls(csrf_app, ids)
        account_id = account.id
    login_with_token(client, email)
    assert len(urls) >= 10
    with csrf_app.app_context():
        before = db.session.scalar(select(func.count(AuditLog.id)))
    for url in urls:
        response = client.post(url, data={"name": "x", "email": "x@example.jp", "role": "owner"})
        assert response.status_code == 400, url
        assert "フォームの有効期限が切れたか、不正な送信です" in response.get_data(as_text=True), url
    with csrf_app.app_context():
        assert db.session.scalar(select(func.count(AuditLog.id))) == before
        assert db.session.get(Customer, ids["customer_id"]).deleted_at is None
        assert db.session.get(MailboxPreset, ids["preset_id"]) is not None
        assert db.session.get(Account, account_id).status == AccountStatus.ACTIVE
        assert db.session.scalar(select(func.count(LoginSession.id))) == 1  # logout was refused too


def test_form_with_token_goes_through(csrf_app):
    """The same form with its token is accepted (the check is not simply refusing everything)."""
    client = csrf_app.test_client()
    with csrf_app.app_context():
        account, owner = make_account()
        email = owner.user.email
    login_with_token(client, email)
    page = BeautifulSoup(client.get("/customers/new").get_data(as_text=True), "html.parser")
    token = page.find("input", {"name": "csrf_token"})["value"]
    response = client.post("/customers/new", data={"csrf_token": token, "name": "山田", "email": "y@client.example",
                                                   "company": "", "assigned_user_id": ""})
    assert response.status_code == 302
