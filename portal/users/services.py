"""Member management: invite, change role, disable, re-enable, delete, reset links; the last owner is protected."""
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from portal import audit, passwords
from portal.auth.resets import IN_ANOTHER_ACCOUNT, issue_reset, other_account_membership
from portal.auth.services import new_token, normalise_email, revoke_membership_sessions
from portal.mailbox.services import unlink_membership
from portal.models import Account, Customer, Invitation, Membership, MembershipState, Role, UnlinkReason, User
from portal.policy import Action, ensure
from portal.scoping import for_account


class MemberRuleBroken(Exception):
    """A change the rules forbid; the message is shown to the member as is."""


def _active_owner_count(session: Session, account_id: int) -> int:
    """How many active owners the account has."""
    return session.scalar(for_account(select(func.count(Membership.id)), account_id).where(
        Membership.role == Role.OWNER, Membership.state == MembershipState.ACTIVE))


def _guard(session: Session, actor: Membership, target: Membership, new_role: Role | None = None,
           leaves_owners: bool = False) -> None:
    """Refuse self-lockout, owner changes by non-owners and losing the last owner."""
    touches_owner = target.role == Role.OWNER or new_role == Role.OWNER
    if touches_owner and actor.role != Role.OWNER:
        raise MemberRuleBroken("オーナーの追加・変更はオーナーのみが行えます。")
    if leaves_owners and target.role == Role.OWNER and target.state == MembershipState.ACTIVE \
            and _active_owner_count(session, target.account_id) <= 1:
        raise MemberRuleBroken("最後のオーナーは変更・無効化・削除できません。先に別のオーナーを追加してください。")


def members_of(session: Session, account_id: int) -> list[Membership]:
    """Members of the account that are not deleted, in the order they joined."""
    return list(session.scalars(
        for_account(select(Membership), account_id).where(Membership.state != MembershipState.DELETED)
        .order_by(Membership.id)))


def add_member(session: Session, account: Account, actor: Membership | None, email: str, name: str, role: Role,
               initial_password: str) -> tuple[Membership, bool]:
    """Add a member directly, for the operator's CLI and the demo seed only (screens invite instead).

    An existing login is linked as it is; returns (membership, whether a new identity was made).
    """
    if role == Role.OWNER and actor is not None and actor.role != Role.OWNER:
        raise MemberRuleBroken("オーナーの追加・変更はオーナーのみが行えます。")
    email = normalise_email(email)
    user = session.scalar(select(User).where(User.email == email))
    created = user is None
    if created:
        user = User(email=email, name=name.strip(), password_hash=passwords.hash_password(initial_password))
        session.add(user)
        session.flush()
    membership = session.scalar(for_account(select(Membership), account.id).where(Membership.user_id == user.id))
    if membership is not None and membership.state != MembershipState.DELETED:
        raise MemberRuleBroken("このメールアドレスのユーザーはすでに登録されています。")
    if membership is None:
        membership = Membership(account_id=account.id, user_id=user.id, role=role)
        session.add(membership)
    else:  # a deleted member comes back with the new role
        membership.role = role
        membership.state = MembershipState.ACTIVE
    session.flush()
    audit.record(session, account.id, actor.user_id if actor else None, "member.add", "membership", membership.id,
                 email=email, role=role.value, new_identity=created)
    session.commit()
    return membership, created


def change_role(session: Session, actor: Membership, target: Membership, role: Role) -> None:
    """Give a member another role."""
    if role == target.role:
        return
    _guard(session, actor, target, new_role=role, leaves_owners=target.role == Role.OWNER)
    audit.record(session, target.account_id, actor.user_id, "member.role", "membership", target.id,
                 before=target.role.value, after=role.value)
    target.role = role
    session.commit()


def _stop_working(session: Session, actor: Membership, target: Membership, state: MembershipState,
                  now: datetime) -> bool:
    """Disable or delete a member (never oneself, never the last owner): their sessions in this account end and
    their mailbox is unlinked; no commit. Returns whether a mailbox was unlinked."""
    deleting = state == MembershipState.DELETED
    if target.id == actor.id:
        raise MemberRuleBroken("自分自身を削除することはできません。" if deleting
                               else "自分自身を無効化することはできません。")
    _guard(session, actor, target, leaves_owners=True)
    target.state = state
    revoke_membership_sessions(session, target.id)
    reason = UnlinkReason.MEMBER_DELETED if deleting else UnlinkReason.MEMBER_DISABLED
    return bool(unlink_membership(session, target.id, reason, actor.user_id, now))


def disable_member(session: Session, actor: Membership, target: Membership, now: datetime) -> None:
    """Disable a member and end their live sessions in this account."""
    unlinked = _stop_working(session, actor, target, MembershipState.DISABLED, now)
    audit.record(session, target.account_id, actor.user_id, "member.disable", "membership", target.id,
                 mailbox_unlinked=unlinked)
    session.commit()


def enable_member(session: Session, actor: Membership, target: Membership) -> None:
    """Let a disabled member work again."""
    _guard(session, actor, target)
    target.state = MembershipState.ACTIVE
    audit.record(session, target.account_id, actor.user_id, "member.enable", "membership", target.id)
    session.commit()


def delete_member(session: Session, actor: Membership, target: Membership, now: datetime) -> None:
    """Remove a member from the account; the row stays (state deleted) so history keeps the name."""
    unlinked = _stop_working(session, actor, target, MembershipState.DELETED, now)
    session.execute(update(Customer).where(Customer.assigned_membership_id == target.id)
                    .values(assigned_membership_id=None))
    audit.record(session, target.account_id, actor.user_id, "member.delete", "membership", target.id,
                 mailbox_unlinked=unlinked)
    session.commit()


OWNERS_ONLY = "オーナーの追加・変更はオーナーのみが行えます。"


def pending_invitations(session: Session, account_id: int) -> list[Invitation]:
    """The account's invitations not yet accepted (expired ones included, to renew or cancel), oldest first."""
    return list(session.scalars(for_account(select(Invitation), account_id)
                                .order_by(Invitation.created_at, Invitation.id)))


def invite_member(session: Session, actor: Membership, email: str, name: str, role: Role, now: datetime,
                  days: int) -> tuple[Invitation, str]:
    """Invite an address with a role; returns the invitation and its link token (shown once).

    The same happens whether or not the address already has a login elsewhere: nothing here tells the admin.
    """
    ensure(actor.role, Action.MANAGE_USERS)
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise MemberRuleBroken(OWNERS_ONLY)
    email = normalise_email(email)
    member = session.scalar(for_account(select(Membership.id).join(User, User.id == Membership.user_id),
                                        actor.account_id).where(User.email == email,
                                                                Membership.state != MembershipState.DELETED))
    if member is not None:
        raise MemberRuleBroken("このメールアドレスのユーザーはすでに登録されています。")
    if session.scalar(for_account(select(Invitation.id), actor.account_id)
                      .where(Invitation.email == email)) is not None:
        raise MemberRuleBroken("このメールアドレスはすでに招待中です。一覧から招待リンクを発行し直せます。")
    token, digest = new_token()
    invitation = Invitation(account_id=actor.account_id, email=email, name=name.strip(), role=role,
                            invited_by_user_id=actor.user_id, token_hash=digest, created_at=now,
                            expires_at=now + timedelta(days=days))
    session.add(invitation)
    session.flush()
    audit.record(session, actor.account_id, actor.user_id, "member.invite", "invitation", invitation.id,
                 email=email, role=role.value)
    session.commit()
    return invitation, token


def renew_invitation_link(session: Session, actor: Membership, invitation: Invitation, now: datetime,
                          days: int) -> str:
    """A new link for a pending invitation (the old link stops working); returns its token."""
    ensure(actor.role, Action.MANAGE_USERS)
    if invitation.role == Role.OWNER and actor.role != Role.OWNER:
        raise MemberRuleBroken(OWNERS_ONLY)
    token, invitation.token_hash = new_token()
    invitation.expires_at = now + timedelta(days=days)
    audit.record(session, invitation.account_id, actor.user_id, "member.invite_renew", "invitation", invitation.id,
                 email=invitation.email)
    session.commit()
    return token


def cancel_invitation(session: Session, actor: Membership, invitation: Invitation) -> None:
    """Withdraw an invitation; its link stops working."""
    ensure(actor.role, Action.MANAGE_USERS)
    if invitation.role == Role.OWNER and actor.role != Role.OWNER:
        raise MemberRuleBroken(OWNERS_ONLY)
    audit.record(session, invitation.account_id, actor.user_id, "member.invite_cancel", "invitation", invitation.id,
                 email=invitation.email)
    session.delete(invitation)
    session.commit()


def issue_reset_link(session: Session, actor: Membership, target: Membership, now: datetime,
                     hours: int) -> tuple[str, datetime]:
    """A one-time password reset link for a member of this account only; returns (token, expiry), shown once."""
    ensure(actor.role, Action.MANAGE_USERS)
    if target.id == actor.id:
        raise MemberRuleBroken("ご自身のパスワードは「パスワードの変更」から変更してください。")
    _guard(session, actor, target)
    if other_account_membership(session, target.user_id, target.account_id):
        raise MemberRuleBroken(IN_ANOTHER_ACCOUNT)
    token = issue_reset(session, target.user, target.account_id, actor.user_id, now, hours)
    audit.record(session, target.account_id, actor.user_id, "member.reset_link", "membership", target.id)
    session.commit()
    return token, now + timedelta(hours=hours)
