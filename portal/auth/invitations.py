"""The invitee's side of an invitation: open the link, join (new or existing login), or decline."""
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal import audit, passwords
from portal.auth.services import hash_token, normalise_email
from portal.models import AccountStatus, Invitation, Membership, MembershipState, User
from portal.scoping import for_account


class InvitationUnusable(Exception):
    """The invitation cannot be accepted now; the message says why, in Japanese."""


def find_invitation(session: Session, token: str, now: datetime) -> Invitation | None:
    """The pending, unexpired invitation behind a link, or None."""
    invitation = session.scalar(select(Invitation).where(Invitation.token_hash == hash_token(token or "")))
    if invitation is None or invitation.expires_at <= now:
        return None
    return invitation


def pending_for(session: Session, email: str, now: datetime) -> list[Invitation]:
    """Unexpired invitations addressed to this login's email, newest first (for the account choice screen)."""
    return list(session.scalars(select(Invitation).where(Invitation.email == normalise_email(email),
                                                         Invitation.expires_at > now)
                                .order_by(Invitation.created_at.desc(), Invitation.id.desc())))


def accept(session: Session, invitation: Invitation, user: User, now: datetime) -> Membership:
    """Make the signed-in person a member with the invited role; the invitation is used up."""
    if normalise_email(user.email) != invitation.email:
        raise InvitationUnusable("この招待はほかのメールアドレス宛てです。")
    if invitation.account.status != AccountStatus.ACTIVE:
        raise InvitationUnusable("このアカウントは現在ご利用いただけないため、招待を承諾できません。")
    membership = session.scalar(for_account(select(Membership), invitation.account_id)
                                .where(Membership.user_id == user.id))
    if membership is not None and membership.state == MembershipState.DISABLED:
        # An invitation never re-enables a member an admin has disabled.
        raise InvitationUnusable("このアカウントでのご利用は無効になっています。アカウントの管理者にお問い合わせください。")
    # Deleting first makes a second, simultaneous acceptance of the same link find nothing.
    if session.execute(delete(Invitation).where(Invitation.id == invitation.id)).rowcount != 1:
        session.rollback()
        raise InvitationUnusable("この招待はすでに使われています。")
    if membership is None:
        membership = Membership(account_id=invitation.account_id, user_id=user.id, role=invitation.role,
                                created_at=now)
        session.add(membership)
    elif membership.state == MembershipState.DELETED:  # a removed member comes back with the invited role
        membership.role, membership.state = invitation.role, MembershipState.ACTIVE
    session.flush()
    audit.record(session, invitation.account_id, user.id, "member.join", "membership", membership.id,
                 email=invitation.email, role=invitation.role.value)
    session.commit()
    return membership


def join_with_password(session: Session, invitation: Invitation, password: str, now: datetime) -> Membership | None:
    """Accept through the link without a session: a new address gets this password, an existing login must
    give its own. None when the existing login's password is wrong."""
    user = session.scalar(select(User).where(User.email == invitation.email))
    if user is None:
        user = User(email=invitation.email, name=invitation.name, password_hash=passwords.hash_password(password),
                    created_at=now)
        session.add(user)
        try:
            session.flush()
        except IntegrityError as error:  # the same address joined elsewhere a moment ago
            session.rollback()
            raise InvitationUnusable("処理が重なりました。もう一度お試しください。") from error
    elif not passwords.verify_password(user.password_hash, password):
        return None
    return accept(session, invitation, user, now)


def decline(session: Session, invitation: Invitation, user_id: int | None) -> None:
    """Turn the invitation down; the account's admins see it gone from their list."""
    audit.record(session, invitation.account_id, user_id, "invitation.decline", "invitation", invitation.id,
                 email=invitation.email)
    session.delete(invitation)
    session.commit()
