"""Passwords: self-service change, admin-issued one-time reset links (and who may issue them), the CLI link."""
from datetime import timedelta

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditLog, LoginSession, PasswordReset, Role
from portal.users.services import add_member
from tests.factories import PASSWORD, make_account, make_member

NEW = "brand-new-secret-7"


def link_path(response) -> str:
    """The one-time link on the link page, as a path."""
    assert response.status_code == 200, response.get_data(as_text=True)
    value = BeautifulSoup(response.get_data(as_text=True), "html.parser").find(id="one-time-link")["value"]
    return "/" + value.split("/", 3)[3]


def set_password(client, path, password=NEW, confirm=None):
    """Post a reset link's form."""
    return client.post(path, data={"password": password, "password_confirm": confirm or password})


def sessions_of(user_id) -> int:
    """How many live sessions the person has."""
    db.session.expire_all()
    return len(db.session.scalars(select(LoginSession).where(LoginSession.user_id == user_id)).all())


def test_changing_ones_password_needs_the_current_one_and_ends_other_sessions(make_app):
    """Wrong current password: 422, nothing changes. Right: this browser stays in, the other one is out."""
    app = make_app()
    laptop, phone = app.test_client(), app.test_client()
    with app.app_context():
        account, owner = make_account()
        email, user_id = owner.user.email, owner.user_id
    for browser in (laptop, phone):
        assert browser.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
    assert "パスワードの変更" in laptop.get("/").get_data(as_text=True)
    wrong = laptop.post("/password", data={"current_password": "not-my-password", "password": NEW,
                                           "password_confirm": NEW})
    assert wrong.status_code == 422 and "現在のパスワードが正しくありません。" in wrong.get_data(as_text=True)
    short = laptop.post("/password", data={"current_password": PASSWORD, "password": "short",
                                           "password_confirm": "short"})
    assert short.status_code == 422 and "10文字以上" in short.get_data(as_text=True)
    assert phone.get("/").status_code == 200
    changed = laptop.post("/password", data={"current_password": PASSWORD, "password": NEW,
                                             "password_confirm": NEW})
    assert changed.status_code == 302
    assert laptop.get("/").status_code == 200  # this session continues
    assert phone.get("/").headers["Location"].startswith("/login")  # the other one ended
    with app.app_context():
        assert sessions_of(user_id) == 1
    assert phone.post("/login", data={"email": email, "password": PASSWORD}).status_code == 401
    assert phone.post("/login", data={"email": email, "password": NEW}).status_code == 302


def test_wrong_current_passwords_are_limited(make_app):
    """Someone holding a stolen session cannot guess the password through the change form for long."""
    app = make_app(LOGIN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    with app.app_context():
        account, owner = make_account()
        email = owner.user.email
    client.post("/login", data={"email": email, "password": PASSWORD})
    for _ in range(3):
        client.post("/password", data={"current_password": "guess-number-x", "password": NEW,
                                       "password_confirm": NEW})
    response = client.post("/password", data={"current_password": PASSWORD, "password": NEW,
                                              "password_confirm": NEW})
    assert response.status_code == 429


def test_a_reset_link_is_shown_once_works_once_and_ends_every_session(make_app):
    """The admin hands over the link; it sets the password once, signs the person out everywhere, then is dead."""
    app = make_app()
    admin_browser, member_browser, other = app.test_client(), app.test_client(), app.test_client()
    with app.app_context():
        account, owner = make_account()
        member = make_member(account, Role.USER)
        owner_email, member_email, member_id, user_id = owner.user.email, member.user.email, member.id, member.user_id
    admin_browser.post("/login", data={"email": owner_email, "password": PASSWORD})
    member_browser.post("/login", data={"email": member_email, "password": PASSWORD})
    assert "発行する" in admin_browser.get(f"/settings/users/{member_id}/reset-link").get_data(as_text=True)
    path = link_path(admin_browser.post(f"/settings/users/{member_id}/reset-link"))
    token = path.rsplit("/", 1)[1]
    assert token not in admin_browser.get("/settings/users").get_data(as_text=True)
    with app.app_context():
        stored = db.session.scalar(select(PasswordReset))
        assert stored.token_hash != token and token not in stored.token_hash  # only a digest is kept
        assert stored.expires_at - stored.created_at == timedelta(hours=24)
        assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "member.reset_link"))
    page = other.get(path)
    assert page.status_code == 200 and member_email in page.get_data(as_text=True)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert set_password(other, path, NEW, "mismatch-123456").status_code == 422
    assert set_password(other, path).status_code == 302
    assert member_browser.get("/").headers["Location"].startswith("/login")
    with app.app_context():
        assert sessions_of(user_id) == 0
    second = set_password(other, path, "another-secret-9")
    assert second.status_code == 404 and "すでに使われています" in second.get_data(as_text=True)
    assert other.post("/login", data={"email": member_email, "password": NEW}).status_code == 302


def test_expired_and_replaced_links_do_not_work(client, auth):
    """A link past its lifetime, or one replaced by a newer link, answers 404."""
    account, owner = make_account()
    member = make_member(account, Role.USER)
    auth.login_member(owner)
    first = link_path(client.post(f"/settings/users/{member.id}/reset-link"))
    second = link_path(client.post(f"/settings/users/{member.id}/reset-link"))
    assert client.get(first).status_code == 404 and client.get(second).status_code == 200
    reset = db.session.scalar(select(PasswordReset))
    reset.expires_at = reset.created_at
    db.session.commit()
    assert set_password(client, second).status_code == 404


def test_nobody_resets_a_person_who_also_belongs_to_another_account(client, auth):
    """B's admin cannot get a link for someone who is also in A: with it, B's admin could sign in to A."""
    account_a, owner_a = make_account("A社")
    shared = make_member(account_a, Role.ADMIN, email="shared@example.jp")
    account_b, owner_b = make_account("B社")
    in_b, _ = add_member(db.session, account_b, None, "shared@example.jp", "x", Role.USER, "unused-pass-1")
    auth.login_member(owner_b)
    page = client.post(f"/settings/users/{in_b.id}/reset-link", follow_redirects=True).get_data(as_text=True)
    assert "ほかのアカウントにも所属しているため" in page
    assert db.session.scalar(select(PasswordReset)) is None
    assert client.post(f"/settings/users/{shared.id}/reset-link").status_code == 404  # A's member: not B's


def test_a_link_issued_before_the_person_joined_another_account_stops_working(client, auth):
    """The rule is checked again when the link is used, so an old link of B cannot take over A's new member."""
    account_b, owner_b = make_account("B社")
    member = make_member(account_b, Role.USER, email="mover@example.jp")
    auth.login_member(owner_b)
    path = link_path(client.post(f"/settings/users/{member.id}/reset-link"))
    account_a, owner_a = make_account("A社")
    add_member(db.session, account_a, None, "mover@example.jp", "x", Role.ADMIN, "unused-pass-1")
    auth.logout()
    assert client.get(path).status_code == 404
    assert set_password(client, path).status_code == 404
    assert auth.login("mover@example.jp", PASSWORD).status_code == 302  # unchanged


@pytest.mark.parametrize("issuer_role,target_role,allowed", [
    (Role.ADMIN, Role.OWNER, False), (Role.OWNER, Role.ADMIN, True), (Role.ADMIN, Role.USER, True)])
def test_only_owners_reset_owners(client, auth, issuer_role, target_role, allowed):
    """As with every owner change, an admin cannot get a link for an owner."""
    account, owner = make_account()
    issuer = owner if issuer_role == Role.OWNER else make_member(account, issuer_role)
    target = make_member(account, target_role)
    auth.login_member(issuer)
    response = client.post(f"/settings/users/{target.id}/reset-link")
    assert (response.status_code == 200) == allowed
    assert (db.session.scalar(select(PasswordReset)) is not None) == allowed


def test_no_reset_link_for_oneself(client, auth):
    """Admins change their own password with the current one, not with a link they hand themselves."""
    account, owner = make_account()
    auth.login_member(owner)
    page = client.post(f"/settings/users/{owner.id}/reset-link", follow_redirects=True).get_data(as_text=True)
    assert "「パスワードの変更」から変更してください" in page


def test_a_changed_password_cancels_outstanding_links(client, auth):
    """Someone who changes their own password makes a link still in another's hands useless."""
    account, owner = make_account()
    member = make_member(account, Role.USER)
    auth.login_member(owner)
    path = link_path(client.post(f"/settings/users/{member.id}/reset-link"))
    auth.logout()
    auth.login_member(member)
    client.post("/password", data={"current_password": PASSWORD, "password": NEW, "password_confirm": NEW})
    auth.logout()
    assert client.get(path).status_code == 404


def test_the_operator_cli_prints_a_one_time_link(app, client):
    """`flask reset-password --email` prints a link (it sets nothing itself); unknown addresses are an error."""
    account, owner = make_account()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reset-password", "--email", owner.user.email.upper()])
    assert result.exit_code == 0, result.output
    assert "24時間有効・1回限り" in result.output
    path = "/password/reset/" + result.output.split("/password/reset/")[1].split()[0]
    assert set_password(client, path).status_code == 302
    assert set_password(client, path).status_code == 404
    assert client.post("/login", data={"email": owner.user.email, "password": NEW}).status_code == 302
    unknown = runner.invoke(args=["reset-password", "--email", "nobody@example.jp"])
    assert unknown.exit_code != 0 and "ログインIDはありません" in unknown.output


def test_the_cli_link_uses_the_public_address(make_app):
    """With PUBLIC_BASE_URL set, the printed link starts with it."""
    app = make_app(PUBLIC_BASE_URL="https://crm.example.jp")
    with app.app_context():
        account, owner = make_account()
        result = app.test_cli_runner().invoke(args=["reset-password", "--email", owner.user.email])
    assert "https://crm.example.jp/password/reset/" in result.output
