"""ユーザー管理: list, add, change role, disable, re-enable and delete members."""
from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for

from portal.extensions import db
from portal.mailbox.services import live_link
from portal.models import Invitation, Membership, MembershipState, Role, utcnow
from portal.policy import Action
from portal.users import services
from portal.users.forms import InviteMemberForm, RoleForm
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
    """Render the member list and the pending invitations."""
    account_id = current_membership().account_id
    return render_template("users/index.html", members=services.members_of(db.session, account_id),
                           invitations=services.pending_invitations(db.session, account_id), now=utcnow(),
                           role_form=RoleForm())


def _link_page(kind: str, endpoint: str, token: str, email: str, expires_at):
    """Show a one-time link once, to hand over; it is never stored in clear, cached or sent as a Referer."""
    path = url_for(endpoint, token=token)
    base = current_app.config["PUBLIC_BASE_URL"]
    link = base + path if base else url_for(endpoint, token=token, _external=True)
    response = make_response(render_template("users/link.html", kind=kind, link=link, email=email,
                                             expires_at=expires_at))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _invitation_link(invitation: Invitation, token: str):
    """The invitation's link page."""
    return _link_page("invitation", "auth.invitation", token, invitation.email, invitation.expires_at)


@bp.route("/new", methods=["GET", "POST"])
@permission_required(Action.MANAGE_USERS)
def create():
    """Invite a member: the same answer whether or not the address already signs in elsewhere."""
    form = InviteMemberForm()
    if form.validate_on_submit():
        try:
            invitation, token = services.invite_member(db.session, current_membership(), form.email.data,
                                                       form.name.data, Role(form.role.data), utcnow(),
                                                       current_app.config["INVITATION_DAYS"])
        except services.MemberRuleBroken as broken:
            form.email.errors.append(str(broken))
        else:
            return _invitation_link(invitation, token)
    return render_template("users/form.html", form=form), 422 if form.errors else 200


def _load_invitation(invitation_id: int) -> Invitation:
    """A pending invitation of the current account (404 otherwise), for an owner or admin (403 otherwise)."""
    invitation = get_scoped_or_404(Invitation, invitation_id)
    authorize(Action.MANAGE_USERS)
    return invitation


@bp.post("/invitations/<int:invitation_id>/link")
@member_required
def renew_invitation(invitation_id: int):
    """A new invitation link (the previous one stops working), shown once."""
    invitation = _load_invitation(invitation_id)
    try:
        token = services.renew_invitation_link(db.session, current_membership(), invitation, utcnow(),
                                               current_app.config["INVITATION_DAYS"])
    except services.MemberRuleBroken as broken:
        flash(str(broken), "danger")
        return redirect(url_for("users.index"))
    return _invitation_link(invitation, token)


@bp.route("/invitations/<int:invitation_id>/cancel", methods=["GET", "POST"])
@member_required
def cancel_invitation(invitation_id: int):
    """Confirm, then withdraw an invitation."""
    invitation = _load_invitation(invitation_id)
    if request.method == "POST":
        email = invitation.email
        if _apply(services.cancel_invitation, invitation):
            flash(f"{email} への招待を取り消しました。", "success")
        return redirect(url_for("users.index"))
    return render_template("users/cancel_invitation.html", invitation=invitation)


@bp.route("/<int:membership_id>/reset-link", methods=["GET", "POST"])
@member_required
def reset_link(membership_id: int):
    """Confirm, then issue a one-time password reset link for a member of this account only."""
    member = _load_member(membership_id)
    if request.method == "POST":
        try:
            token, expires_at = services.issue_reset_link(db.session, current_membership(), member, utcnow(),
                                                          current_app.config["PASSWORD_RESET_HOURS"])
        except services.MemberRuleBroken as broken:
            flash(str(broken), "danger")
            return redirect(url_for("users.index"))
        return _link_page("reset", "auth.reset_password", token, member.user.email, expires_at)
    return render_template("users/reset_link.html", member=member)


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
    link = live_link(db.session, member.id)  # stopped by the change, so both screens name it
    if request.method == "POST":
        service = services.disable_member if change == "disable" else services.delete_member
        if _apply(service, member, utcnow()):
            done = f"{member.user.name}さんを{'無効化' if change == 'disable' else '削除'}しました。"
            if link is not None:
                done += f"メールボックス連携（{link.email}）を解除しました。取り込み済みのメールはそのまま残ります。"
            flash(done, "success")
        return redirect(url_for("users.index"))
    title, question, button = CONFIRMATIONS[change]
    return render_template("users/confirm.html", member=member, title=title, question=question,
                           button=button, change=change, link=link)
