"""The アカウント・機能設定 hub, account settings and the audit log."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from portal.extensions import db
from portal.models import AuditLog
from portal.policy import Action
from portal.settings import services
from portal.settings.forms import AccountSettingsForm
from portal.web import current_membership, member_required, permission_required, scoped

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


@bp.get("/audit")
@permission_required(Action.VIEW_AUDIT_LOG)
def audit_log():
    """The account's audit log, newest first."""
    stmt = scoped(AuditLog).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
    page = db.paginate(stmt, per_page=current_app.config["PER_PAGE"] * 2, error_out=False)
    return render_template("settings/audit.html", page=page)
