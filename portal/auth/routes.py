"""Sign-in, sign-out and account choice screens."""
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from portal.auth import services, throttle
from portal.auth.forms import LoginForm, SelectAccountForm
from portal.extensions import db, limiter
from portal.models import utcnow
from portal.web import current_membership, is_safe_next

bp = Blueprint("auth", __name__)

LOGIN_FAILED = "メールアドレスまたはパスワードが正しくありません。"


def _next_or_home(target: str | None) -> str:
    """The requested page when it is on this site, else the home screen."""
    return target if is_safe_next(target) else url_for("main.home")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"],
               deduct_when=lambda response: response.status_code == 401)
def login():
    """Sign in; only failed attempts count towards the rate limit."""
    if current_user.is_authenticated and current_membership() is not None:
        return redirect(url_for("main.home"))
    form = LoginForm(next=request.args.get("next", ""))
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("auth/login.html", form=form), status
    if throttle.address_locked(form.email.data):
        abort(429)  # failed attempts for this address from anywhere: even the right password waits
    user = services.authenticate(db.session, form.email.data, form.password.data)
    if user is None:
        throttle.record_failure(form.email.data)
        form.password.errors.append(LOGIN_FAILED)
        return render_template("auth/login.html", form=form), 401
    if current_user.is_authenticated:
        services.end_login_session(db.session, current_user.session_token)
    memberships = services.usable_memberships(user)
    only = memberships[0] if len(memberships) == 1 else None
    token = services.start_login_session(db.session, user, utcnow(),
                                         current_app.config["LOGIN_SESSION_HOURS"], only)
    session.clear()  # a new session identity on every sign-in
    user.session_token = token
    login_user(user)
    if only is None:
        return redirect(url_for("auth.select_account", next=form.next.data or None))
    flash(f"{user.name}さん、ようこそ。", "success")
    return redirect(_next_or_home(form.next.data))


@bp.post("/logout")
def logout():
    """Sign out and delete the server-side session."""
    if current_user.is_authenticated:
        services.end_login_session(db.session, current_user.session_token)
        logout_user()
    session.clear()
    flash("ログアウトしました。", "info")
    return redirect(url_for("auth.login"))


@bp.route("/accounts/select", methods=["GET", "POST"])
@login_required
def select_account():
    """Choose (or switch) the account to work in."""
    memberships = services.usable_memberships(current_user)
    form = SelectAccountForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        chosen = services.choose_membership(db.session, g.login_session, form.membership_id.data)
        if chosen is not None:
            flash(f"「{chosen.account.name}」に切り替えました。", "success")
            return redirect(_next_or_home(form.next.data))
        form.membership_id.errors.append("このアカウントは選択できません。")
    status = 422 if request.method == "POST" else 200
    return render_template("auth/select_account.html", form=form, memberships=memberships), status
