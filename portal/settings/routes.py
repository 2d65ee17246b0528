"""The アカウント・機能設定 hub, account settings and the audit log."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from portal.extensions import db
from portal.inputs import bounded_id
from wtforms.fields.choices import SelectChoice

from portal.models import AccountStatus, utcnow
from portal.policy import Action
from portal.settings import audit_text, services
from portal.settings.forms import AccountSettingsForm, AuditFilterForm
from portal.web import authorize, current_membership, member_required, permission_required

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
        services.update_account_settings(db.session, membership, form.name.data, form.viewing_restricted.data)
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
        services.change_account_status(db.session, membership, status, utcnow())
        flash(f"{title}を行いました。", "success")
        return redirect(url_for("auth.login"))
    return render_template("settings/account_status.html", title=title, button=button, question=question,
                           change=change)


@bp.get("/audit")
@permission_required(Action.VIEW_AUDIT_LOG)
def audit_log():
    """The account's audit log as sentences, newest first, filtered by member, kind and date."""
    account_id = current_membership().account_id
    form = AuditFilterForm(request.args)
    members = audit_text.filter_members(db.session, account_id)
    form.member.choices = [SelectChoice("", "すべてのユーザー")] + [SelectChoice(str(m.id), m.user.name) for m in members]
    form.kind.choices = [SelectChoice("", "すべての種類")] + [SelectChoice(key, label)
                                                          for key, (label, _) in audit_text.KINDS.items()]
    valid = form.validate()
    filters = audit_text.AuditFilters(
        membership_id=request.args.get("member", type=bounded_id), kind=form.kind.data or None,
        date_from=form.date_from.data if not form.date_from.errors else None,
        date_to=form.date_to.data if not form.date_to.errors else None)
    page = db.paginate(audit_text.log_query(db.session, account_id, filters),
                       per_page=current_app.config["PER_PAGE"] * 2, error_out=False)
    lines = audit_text.describe(db.session, account_id, page.items)
    page_args = {key: value for key, value in request.args.items() if key != "page" and value}
    return render_template("settings/audit.html", page=page, lines=lines, form=form, page_args=page_args), \
        200 if valid else 422
