"""The アカウント・機能設定 hub, account settings and the audit log."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from portal.extensions import db
from portal.models import AccountStatus, AuditLog
from portal.policy import Action
from portal.settings import services
from portal.settings.forms import AccountSettingsForm
from portal.web import authorize, current_membership, member_required, permission_required, scoped

bp = Blueprint("settings", __name__, url_prefix="/settings")


@bp.get("")
@member_required
def index():
    """Links to every settings screen the member may use."""
    return render_template("settings/index.html")


@bp.route("/account", methods=["GET", "POST"])
@permission_required(Action.MANAGE_ACCOUNT)
def account():
    """Account name and 担当者閲覧制限."""
    membership = current_membership()
    form = AccountSettingsForm(obj=membership.account if request.method == "GET" else None)
    if form.validate_on_submit():
        services.update_account_settings(db.session, membership.account, membership, form.name.data,
                                         form.viewing_restricted.data)
        flash("アカウント設定を保存しました。", "success")
        return redirect(url_for("settings.account"))
    return render_template("settings/account.html", form=form), 422 if form.errors else 200


STATUS_CHANGES = {
    "disable": (AccountStatus.DISABLED, "アカウントの無効化", "はい、無効化します",
                "アカウントを無効化すると、すべてのユーザーがログインできなくなり、すべてのメールボックス連携が解除されます。"
                "取り込み済みのメールは削除されません。"),
    "cancel": (AccountStatus.CANCELLED, "アカウントの解約", "はい、解約します",
               "アカウントを解約すると、すべてのユーザーがログインできなくなり、すべてのメールボックス連携が解除されます。"
               "取り込み済みのメールは削除されません。"),
}


CLOSE_OWNERS_ONLY = "アカウントの無効化・解約はオーナーのみが行えます。"


@bp.route("/account/<any(disable, cancel):change>", methods=["GET", "POST"])
@member_required
def account_status(change: str):
    """Confirm, then disable or cancel the account (which signs everyone out and unlinks every mailbox)."""
    membership = authorize(Action.CLOSE_ACCOUNT, CLOSE_OWNERS_ONLY)
    status, title, button, question = STATUS_CHANGES[change]
    if request.method == "POST":
        services.change_account_status(db.session, membership.account, membership.user_id, status)
        flash(f"{title}を行いました。", "success")
        return redirect(url_for("auth.login"))
    return render_template("settings/account_status.html", title=title, button=button, question=question,
                           change=change)


@bp.get("/audit")
@permission_required(Action.VIEW_AUDIT_LOG)
def audit_log():
    """The account's audit log, newest first."""
    stmt = scoped(AuditLog).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
    page = db.paginate(stmt, per_page=current_app.config["PER_PAGE"] * 2, error_out=False)
    return render_template("settings/audit.html", page=page)
