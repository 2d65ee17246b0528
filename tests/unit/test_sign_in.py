"""The sign_in service that the login route calls: one use case instead of four calls in the route."""
from sqlalchemy import func, select

from portal.auth import services
from portal.extensions import db
from portal.models import LoginSession, MembershipState, Role, utcnow
from tests.factories import PASSWORD, make_account, make_member


def _sessions() -> int:
    """How many login sessions exist."""
    return db.session.scalar(select(func.count(LoginSession.id)))


def test_a_wrong_password_starts_nothing(app):
    """None, and no session row, for a wrong password or an unknown address."""
    _, owner = make_account()
    assert services.sign_in(db.session, owner.user.email, "wrong", utcnow(), 8) is None
    assert services.sign_in(db.session, "nobody@example.jp", PASSWORD, utcnow(), 8) is None
    assert _sessions() == 0


def test_one_usable_account_is_chosen_at_once(app):
    """A person with one usable account works in it; the token finds the session."""
    account, owner = make_account()
    make_member(account, Role.USER, email="other@example.jp", state=MembershipState.DISABLED)
    signed_in = services.sign_in(db.session, f"  {owner.user.email.upper()} ", PASSWORD, utcnow(), 8)
    assert signed_in.user == owner.user and signed_in.membership == owner
    assert services.find_login_session(db.session, signed_in.token, utcnow()).membership_id == owner.id


def test_several_accounts_leave_the_choice_to_the_person(app):
    """With two usable accounts nothing is chosen: the session has no membership yet."""
    _, owner = make_account()
    second, _ = make_account()
    make_member(second, Role.USER, email=owner.user.email)
    signed_in = services.sign_in(db.session, owner.user.email, PASSWORD, utcnow(), 8)
    assert signed_in.membership is None
    assert services.find_login_session(db.session, signed_in.token, utcnow()).membership_id is None


def test_signing_in_again_ends_the_session_it_replaces(app):
    """The session already signed in on the browser ends, so its cookie is worthless."""
    _, owner = make_account()
    first = services.sign_in(db.session, owner.user.email, PASSWORD, utcnow(), 8)
    second = services.sign_in(db.session, owner.user.email, PASSWORD, utcnow(), 8, replacing_token=first.token)
    assert services.find_login_session(db.session, first.token, utcnow()) is None
    assert services.find_login_session(db.session, second.token, utcnow()) is not None
    assert _sessions() == 1
