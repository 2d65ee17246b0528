"""Sign-in, sign-out, server-side sessions, rate limiting and choosing an account."""
import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AccountStatus, LoginSession, MembershipState, Role
from portal.users.services import add_member
from tests.factories import PASSWORD, make_account, make_member

LOGIN_FAILED = "メールアドレスまたはパスワードが正しくありません。"


def session_count() -> int:
    """Live login sessions in the database."""
    db.session.expire_all()
    return db.session.scalar(select(func.count(LoginSession.id)))


def test_login_lands_on_home_and_shows_name(client, auth):
    """The right password opens the home screen in the member's only account."""
    account, owner = make_account("ログイン株式会社")
    response = auth.login(owner.user.email.upper(), follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "ホーム" in page and "ログイン株式会社" in page


@pytest.mark.parametrize("case", ["wrong password", "unknown email", "disabled member", "disabled account"])
def test_failed_logins_all_say_the_same(client, auth, case):
    """Nothing in the answer tells which part was wrong."""
    account, owner = make_account()
    member = make_member(account, Role.USER)
    email, password = member.user.email, PASSWORD
    if case == "wrong password":
        password = "wrong-password"
    elif case == "unknown email":
        email = "nobody@example.jp"
    elif case == "disabled member":
        member.state = MembershipState.DISABLED
    else:
        account.status = AccountStatus.DISABLED
    db.session.commit()
    response = auth.login(email, password)
    assert response.status_code == 401
    assert LOGIN_FAILED in response.get_data(as_text=True)
    assert session_count() == 0


def test_empty_login_form_is_a_form_error(client):
    """Missing fields are shown beside the fields, in Japanese."""
    response = client.post("/login", data={"email": "", "password": ""})
    assert response.status_code == 422
    assert response.get_data(as_text=True).count("入力してください。") == 2


def test_failed_logins_are_rate_limited(make_app):
    """After the limit, even the right password is refused with 429 until the window passes."""
    app = make_app(LOGIN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    with app.app_context():
        account, owner = make_account()
        email = owner.user.email
    for _ in range(3):
        assert client.post("/login", data={"email": email, "password": "bad-password"}).status_code == 401
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 429
    assert "しばらくお待ちください" in response.get_data(as_text=True)


def test_successful_logins_do_not_use_up_the_limit(make_app):
    """Only failures count: a member signing in and out often is never locked out."""
    app = make_app(LOGIN_RATE_LIMIT="2 per minute")
    client = app.test_client()
    with app.app_context():
        account, owner = make_account()
        email = owner.user.email
    for _ in range(4):
        assert client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
        client.post("/logout")


def test_login_gives_a_new_session_identity(client, auth):
    """A session cookie planted before login is not the one used after it."""
    account, owner = make_account()
    with client.session_transaction() as planted:
        planted["planted"] = "by-attacker"
    auth.login(owner.user.email)
    with client.session_transaction() as current:
        assert "planted" not in current
        assert current["_user_id"]


def test_logout_ends_the_server_session(client, auth):
    """A copy of the cookie taken before logout no longer works afterwards."""
    account, owner = make_account()
    auth.login(owner.user.email)
    with client.session_transaction() as stolen:
        stolen_copy = dict(stolen)
    assert session_count() == 1
    assert client.post("/logout").status_code == 302
    assert session_count() == 0
    with client.session_transaction() as replay:
        replay.update(stolen_copy)
    response = client.get("/customers")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_disabling_a_member_ends_their_live_session(make_app):
    """The disabled member's very next request is sent to the login page."""
    app = make_app()
    with app.app_context():
        account, owner = make_account()
        member = make_member(account, Role.USER)
        member_email, member_id = member.user.email, member.id
        owner_email = owner.user.email
    member_client, owner_client = app.test_client(), app.test_client()
    member_client.post("/login", data={"email": member_email, "password": PASSWORD})
    assert member_client.get("/customers").status_code == 200
    owner_client.post("/login", data={"email": owner_email, "password": PASSWORD})
    assert owner_client.post(f"/settings/users/{member_id}/disable").status_code == 302
    response = member_client.get("/customers")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_disabled_account_ends_sessions_on_next_request(client, auth):
    """Sessions of a disabled account stop working at once."""
    account, owner = make_account()
    auth.login(owner.user.email)
    account.status = AccountStatus.CANCELLED
    db.session.commit()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert session_count() == 0


def test_expired_session_is_refused(client, auth):
    """A login session past its expiry no longer authenticates."""
    from datetime import timedelta
    account, owner = make_account()
    auth.login(owner.user.email)
    login_session = db.session.scalar(select(LoginSession))
    login_session.expires_at = login_session.created_at - timedelta(seconds=1)
    db.session.commit()
    assert client.get("/").status_code == 302


def test_member_of_two_accounts_picks_and_switches(client, auth):
    """Several accounts: choose after login, then switch from the menu."""
    first, first_owner = make_account("一番商事")
    second, _ = make_account("二番物産")
    second_membership, _ = add_member(db.session, second, None, first_owner.user.email, "x", Role.USER, "ignored-pw")
    response = auth.login(first_owner.user.email)
    assert "/accounts/select" in response.headers["Location"]
    assert client.get("/customers").headers["Location"].startswith("/accounts/select")
    page = client.get("/accounts/select").get_data(as_text=True)
    assert "一番商事" in page and "二番物産" in page
    client.post("/accounts/select", data={"membership_id": second_membership.id})
    assert "二番物産" in client.get("/").get_data(as_text=True)
    # As a plain user in the second account, user management is forbidden ...
    assert client.get("/settings/users").status_code == 403
    # ... and after switching back to the first account (owner) it is allowed.
    client.post("/accounts/select", data={"membership_id": first_owner.id})
    assert client.get("/settings/users").status_code == 200


def test_cannot_select_someone_elses_membership(client, auth):
    """Posting another person's membership id does not switch accounts."""
    mine, my_owner = make_account()
    theirs, their_owner = make_account()
    auth.login(my_owner.user.email)
    response = client.post("/accounts/select", data={"membership_id": their_owner.id})
    assert response.status_code == 422
    assert "このアカウントは選択できません。" in response.get_data(as_text=True)
    assert theirs.name not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("target,expected", [
    ("/customers", "/customers"),
    ("https://evil.example/phish", "/"),
    ("//evil.example/phish", "/"),
    ("/\\evil.example", "/"),
])
def test_next_only_redirects_within_the_site(client, target, expected):
    """The ?next= after login never leads off the portal."""
    account, owner = make_account()
    response = client.post("/login", data={"email": owner.user.email, "password": PASSWORD, "next": target})
    assert response.headers["Location"] == expected


def test_login_redirects_anonymous_with_next(client):
    """An anonymous visit to a screen comes back there after login."""
    account, owner = make_account()
    response = client.get("/customers")
    assert response.status_code == 302 and "next=%2Fcustomers" in response.headers["Location"]
