"""Sign-in, sign-out and account choice screens."""
from flask import (Blueprint, abort, current_app, flash, g, make_response, redirect, render_template, request,
                   session, url_for)
from flask_login import current_user, login_required, login_user, logout_user

from portal.auth import invitations, resets, services, throttle
from portal.auth.forms import (ChangePasswordForm, InvitationAnswerForm, JoinForm, LoginForm, ResetPasswordForm,
                               SelectAccountForm)
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
    signed_in = services.sign_in(db.session, form.email.data, form.password.data, utcnow(),
                                 current_app.config["LOGIN_SESSION_HOURS"], _current_token())
    if signed_in is None:
        throttle.record_failure(form.email.data)
        form.password.errors.append(LOGIN_FAILED)
        return render_template("auth/login.html", form=form), 401
    _log_in(signed_in)
    if signed_in.membership is None:
        return redirect(url_for("auth.select_account", next=form.next.data or None))
    flash(f"{signed_in.user.name}さん、ようこそ。", "success")
    return redirect(_next_or_home(form.next.data))


def _current_token() -> str | None:
    """The token of the session already signed in on this browser, which a new sign-in replaces."""
    return current_user.session_token if current_user.is_authenticated else None


def _log_in(signed_in: services.SignedIn) -> None:
    """Carry a started login session in a new cookie session (a new session identity on every sign-in)."""
    session.clear()
    signed_in.user.session_token = signed_in.token
    login_user(signed_in.user)


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
    return render_template("auth/select_account.html", form=form, memberships=memberships,
                           invitations=invitations.pending_for(db.session, current_user.email, utcnow())), status


def _private(response):
    """Token pages and shown-once links: never cached, never sent on as a Referer."""
    response = make_response(response)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _failed_password_limit():
    """The per-client limit, counting only requests whose password (or link) was wrong."""
    return limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"],
                         deduct_when=lambda response: bool(g.get("password_failed")) or response.status_code == 404)


def _sign_in(user, membership) -> None:
    """Start a fresh session for the person, working in this membership."""
    _log_in(services.start_fresh_session(db.session, user, membership, utcnow(),
                                         current_app.config["LOGIN_SESSION_HOURS"], _current_token()))


@bp.route("/password", methods=["GET", "POST"])
@login_required
@_failed_password_limit()
def change_password():
    """パスワードの変更: the current password is required; every other session of the person ends."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        if throttle.address_locked(current_user.email):
            abort(429)
        if services.change_password(db.session, current_user, form.current_password.data, form.password.data,
                                    current_user.session_token):
            flash("パスワードを変更しました。ほかの端末やブラウザでのログインはすべて終了しました。", "success")
            return redirect(url_for("main.home") if current_membership() else url_for("auth.select_account"))
        g.password_failed = True
        throttle.record_failure(current_user.email)
        form.current_password.errors.append("現在のパスワードが正しくありません。")
    status = 422 if request.method == "POST" else 200
    return render_template("auth/change_password.html", form=form), status


RESET_LINK_GONE = ("このパスワード再設定リンクは無効か、有効期限が切れているか、すでに使われています。"
                   "管理者に新しいリンクを発行してもらってください。")


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@_failed_password_limit()
def reset_password(token: str):
    """A one-time reset link: choose a new password; every session of the person ends."""
    reset = resets.find_reset(db.session, token, utcnow())
    if reset is None:
        abort(404, description=RESET_LINK_GONE)
    form = ResetPasswordForm()
    if form.validate_on_submit():
        person_id = reset.user_id
        if not resets.use_reset(db.session, reset, form.password.data, utcnow()):
            abort(404, description=RESET_LINK_GONE)
        if current_user.is_authenticated and current_user.id == person_id:
            logout_user()  # their sessions have all ended; so does this one
            session.clear()
        flash("パスワードを設定しました。新しいパスワードでログインしてください。", "success")
        return redirect(url_for("auth.login"))
    status = 422 if request.method == "POST" else 200
    return _private((render_template("auth/reset_password.html", form=form, email=reset.user.email), status))


INVITATION_GONE = ("この招待リンクは無効か、有効期限が切れています。"
                   "招待したアカウントの管理者に、新しいリンクを発行してもらってください。")


@bp.route("/invitations/<token>", methods=["GET", "POST"])
@_failed_password_limit()
def invitation(token: str):
    """An invitation link: join with a password (new or existing login alike), or accept/decline when signed in."""
    invitation = invitations.find_invitation(db.session, token, utcnow())
    if invitation is None:
        abort(404, description=INVITATION_GONE)
    is_invitee = current_user.is_authenticated and current_user.email == invitation.email
    join_form, answer_form = JoinForm(), InvitationAnswerForm()
    status = 200
    if request.method == "POST":
        account_name = invitation.account.name
        try:
            if request.form.get("answer") == "decline" and answer_form.validate_on_submit():
                invitations.decline(db.session, invitation, current_user.id if is_invitee else None)
                flash(f"「{account_name}」への招待を辞退しました。", "info")
                return redirect(url_for("auth.select_account") if current_user.is_authenticated
                                else url_for("auth.login"))
            if is_invitee and request.form.get("answer") == "accept" and answer_form.validate_on_submit():
                membership = invitations.accept(db.session, invitation, current_user, utcnow())
                services.choose_membership(db.session, g.login_session, membership.id)
                flash(f"「{account_name}」に参加しました。", "success")
                return redirect(url_for("main.home"))
            if not current_user.is_authenticated and join_form.validate_on_submit():
                if throttle.address_locked(invitation.email):
                    abort(429)
                membership = invitations.join_with_password(db.session, invitation, join_form.password.data,
                                                            utcnow())
                if membership is not None:
                    _sign_in(membership.user, membership)
                    flash(f"「{account_name}」に参加しました。", "success")
                    return redirect(url_for("main.home"))
                g.password_failed = True
                throttle.record_failure(invitation.email)
                join_form.password.errors.append("パスワードが正しくありません。")
                status = 401
            else:
                status = 422
        except invitations.InvitationUnusable as unusable:
            return _private((render_template("auth/link_message.html", title="招待を承諾できません",
                                             message=str(unusable)), 409))
    return _private((render_template("auth/invitation.html", invitation=invitation, join_form=join_form,
                                     answer_form=answer_form, is_invitee=is_invitee), status))


@bp.post("/accounts/invitations/<int:invitation_id>/decline")
@login_required
def decline_invitation(invitation_id: int):
    """Decline an invitation listed on the account choice screen (only one addressed to the signed-in login)."""
    found = invitations.pending_for(db.session, current_user.email, utcnow())
    invitation = next((item for item in found if item.id == invitation_id), None)
    if invitation is None:
        abort(404)
    name = invitation.account.name
    invitations.decline(db.session, invitation, current_user.id)
    flash(f"「{name}」への招待を辞退しました。", "info")
    return redirect(url_for("auth.select_account"))
