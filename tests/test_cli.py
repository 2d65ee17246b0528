"""Operator commands on a fresh database: create-account and seed-demo."""
import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Account, Customer, Membership, Role, User
from portal.settings.services import DEMO_MEMBERS, DEMO_PASSWORD


def test_seed_demo_creates_one_member_per_role_and_prints_logins(app, client):
    """The demo account has an owner, admin, manager and user who can all sign in."""
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    for email, _, _ in DEMO_MEMBERS:
        assert email in result.output
    assert DEMO_PASSWORD in result.output
    roles = set(db.session.scalars(select(Membership.role)))
    assert roles == {Role.OWNER, Role.ADMIN, Role.MANAGER, Role.USER}
    assert db.session.scalar(select(func.count(Customer.id))) >= 3
    for email, _, _ in DEMO_MEMBERS:
        assert client.post("/login", data={"email": email, "password": DEMO_PASSWORD}).status_code == 302
        client.post("/logout")


def test_seed_demo_if_empty_leaves_real_data_alone(app):
    """--if-empty does nothing when an account exists; a second plain run refuses."""
    runner = app.test_cli_runner()
    runner.invoke(args=["create-account", "--name", "本番株式会社", "--owner-email", "boss@honban.example.jp",
                        "--owner-password", "long-password-1"])
    result = runner.invoke(args=["seed-demo", "--if-empty"])
    assert result.exit_code == 0 and "作成しませんでした" in result.output
    assert db.session.scalar(select(func.count(Account.id))) == 1
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    again = runner.invoke(args=["seed-demo"])
    assert again.exit_code != 0 and "すでに作成されています" in again.output
    assert "demo-pass" in runner.invoke(args=["seed-demo", "--if-empty"]).output


def test_create_account_makes_a_working_owner(app, client):
    """The new owner signs in and manages users."""
    result = app.test_cli_runner().invoke(args=[
        "create-account", "--name", "新規株式会社", "--owner-email", " Boss@Shinki.example.jp ",
        "--owner-password", "long-password-1", "--owner-name", "社長"])
    assert result.exit_code == 0, result.output
    assert "新規株式会社" in result.output
    user = db.session.scalar(select(User).where(User.email == "boss@shinki.example.jp"))
    assert user.name == "社長"
    assert client.post("/login", data={"email": "boss@shinki.example.jp",
                                       "password": "long-password-1"}).status_code == 302
    assert client.get("/settings/users").status_code == 200


def test_create_account_refuses_weak_input(app):
    """A short password or an empty name is refused with a Japanese message and nothing is created."""
    runner = app.test_cli_runner()
    short = runner.invoke(args=["create-account", "--name", "x", "--owner-email", "a@b.example.jp",
                                "--owner-password", "short"])
    assert short.exit_code != 0 and "10文字以上" in short.output
    blank = runner.invoke(args=["create-account", "--name", "  ", "--owner-email", "a@b.example.jp",
                                "--owner-password", "long-password-1"])
    assert blank.exit_code != 0
    assert db.session.scalar(select(func.count(Account.id))) == 0


def test_seed_demo_fills_the_mail_screens(app, client):
    """A fresh demo shows mail in the list and on a timeline, templates and an automation."""
    assert app.test_cli_runner().invoke(args=["seed-demo"]).exit_code == 0
    client.post("/login", data={"email": DEMO_MEMBERS[0][0], "password": DEMO_PASSWORD})
    listing = client.get("/mails").get_data(as_text=True)
    assert "お見積りのお願い" in listing and "Re: お見積りのお願い" in listing
    customer_id = db.session.scalar(select(Customer.id).where(Customer.name == "田中 健"))
    assert "お見積りのお願い" in client.get(f"/customers/{customer_id}").get_data(as_text=True)
    assert "お打ち合わせのお礼" in client.get("/templates").get_data(as_text=True)
    assert "資料請求後のフォロー" in client.get("/automations").get_data(as_text=True)


@pytest.mark.parametrize("email", ["boss@corp.test", "boss@office.local", "boss@crm.internal"])
def test_create_account_accepts_intranet_domains_like_the_web(app, client, email):
    """Special-use and intranet names work in the CLI and then in the web forms (one rule for both)."""
    result = app.test_cli_runner().invoke(args=["create-account", "--name", "社内", "--owner-email", email,
                                                "--owner-password", "long-password-1"])
    assert result.exit_code == 0, result.output
    assert client.post("/login", data={"email": email, "password": "long-password-1"}).status_code == 302
    invited = client.post("/settings/users/new", data={"email": email.replace("boss", "staff"), "name": "社員",
                                                       "role": "user"})
    assert invited.status_code == 200 and "を招待しました" in invited.get_data(as_text=True)


@pytest.mark.parametrize("email", ["not-an-address", "boss@localhost", "山田 <boss@corp.test>", "boss@corp..test"])
def test_create_account_refuses_what_the_web_refuses(app, email):
    """A malformed owner address is refused with the forms' Japanese message; nothing is created."""
    result = app.test_cli_runner().invoke(args=["create-account", "--name", "社内", "--owner-email", email,
                                                "--owner-password", "long-password-1"])
    assert result.exit_code != 0 and "メールアドレスの形式が正しくありません。" in result.output
    assert db.session.scalar(select(func.count(Account.id))) == 0
