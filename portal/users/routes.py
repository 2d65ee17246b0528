"""ユーザー管理: list, add, change role, disable, re-enable and delete members."""
from flask import Blueprint, flash, redirect, render_template, request, url_for

from portal.extensions import db
from portal.models import Membership, MembershipState, Role
from portal.policy import Action
from portal.users import services
from portal.users.forms import AddMemberForm, RoleForm
from portal.web import authorize, current_membership, get_scoped_or_404, member_required, permission_required

bp = Blueprint("users", __name__, url_prefix="/settings/users")

CONFIRMATIONS = {
    "disable": ("ユーザーを無効化", "このユーザーを無効化しますか？ログイン中の場合はすぐにログアウトされます。", "はい、無効化します"),
    "delete": ("ユーザーを削除", "このユーザーをアカウントから削除しますか？担当している顧客は担当者なしになります。", "はい、削除します"),
}


def _load_member(membership_id: int) -> Membership:
    """A non-deleted member of the current account (404 otherwise), for an owner or admin (403 otherwise)."""
    member = get_scoped_or_404(Membership, membership_id, Membership.state != MembershipState.DELETED)
    authorize(Action.MANAGE_USERS)
    return member


def _apply(change, *args) -> bool:
    """Run a member change, flashing the rule it broke if any."""
    try:
        change(db.session, current_membership(), *args)
        return True
    except services.MemberRuleBroken as broken:
        flash(str(broken), "danger")
        return False


@bp.get("")
@permission_required(Action.MANAGE_USERS)
def index():
    """All members of the account with their roles and states."""
    return _member_list()


def _member_list() -> str:
    """Render the member list."""
    members = services.members_of(db.session, current_membership().account_id)
    return render_template("users/index.html", members=members, role_form=RoleForm())


@bp.route("/new", methods=["GET", "POST"])
@permission_required(Action.MANAGE_USERS)
def create():
    """Add a member with an initial password."""
    form = AddMemberForm()
    if form.validate_on_submit():
        try:
            _, created = services.add_member(db.session, current_membership().account, current_membership(),
                                             form.email.data, form.name.data, Role(form.role.data),
                                             form.password.data)
        except services.MemberRuleBroken as broken:
            form.email.errors.append(str(broken))
        else:
            flash("ユーザーを追加しました。" if created else
                  "既存のログインIDをこのアカウントに追加しました（パスワードは変更されません）。", "success")
            return redirect(url_for("users.index"))
    return render_template("users/form.html", form=form), 422 if form.errors else 200


@bp.post("/<int:membership_id>/role")
@member_required
def change_role(membership_id: int):
    """Give a member another role."""
    member = _load_member(membership_id)
    form = RoleForm()
    if not form.validate_on_submit():
        flash("権限を選択してください。", "danger")
        return _member_list(), 422
    if _apply(services.change_role, member, Role(form.role.data)):
        flash(f"{member.user.name}さんの権限を変更しました。", "success")
    return redirect(url_for("users.index"))


@bp.post("/<int:membership_id>/enable")
@member_required
def enable(membership_id: int):
    """Let a disabled member work again."""
    member = _load_member(membership_id)
    if _apply(services.enable_member, member):
        flash(f"{member.user.name}さんを有効にしました。", "success")
    return redirect(url_for("users.index"))


@bp.route("/<int:membership_id>/<any(disable, delete):change>", methods=["GET", "POST"])
@member_required
def confirm_change(membership_id: int, change: str):
    """Confirm, then disable or delete a member."""
    member = _load_member(membership_id)
    if request.method == "POST":
        service = services.disable_member if change == "disable" else services.delete_member
        if _apply(service, member):
            flash(f"{member.user.name}さんを{'無効化' if change == 'disable' else '削除'}しました。", "success")
        return redirect(url_for("users.index"))
    title, question, button = CONFIRMATIONS[change]
    return render_template("users/confirm.html", member=member, title=title, question=question,
                           button=button, change=change)
