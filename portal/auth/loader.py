"""Flask-Login wiring: the cookie carries a login session token checked against the database."""
from flask import Flask, g, session
from flask_login import LoginManager, current_user, logout_user

from portal.auth.services import find_login_session, revoke_membership_sessions
from portal.extensions import db
from portal.models import utcnow


def init_login(app: Flask, login_manager: LoginManager) -> None:
    """Configure Flask-Login to load users from live server-side sessions only."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "ログインしてください。"
    login_manager.login_message_category = "warning"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(token: str):
        login_session = find_login_session(db.session, token, utcnow())
        if login_session is None:
            return None
        g.login_session = login_session
        user = login_session.user
        user.session_token = token
        return user

    @app.before_request
    def end_session_of_unusable_membership():
        # A disabled member or account loses the session on the very next request.
        if not current_user.is_authenticated:
            return
        membership = g.login_session.membership
        if membership is not None and not membership.is_usable:
            revoke_membership_sessions(db.session, membership.id)
            db.session.commit()
            g.pop("login_session", None)
            logout_user()
            session.clear()
