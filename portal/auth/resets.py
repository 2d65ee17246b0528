"""One-time password reset links: who may issue one, and using one (single use, expiring, stored hashed)."""
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from portal import passwords
from portal.auth.services import end_user_sessions, hash_token, new_token
from portal.models import Membership, MembershipState, PasswordReset, User
from portal.policy import Action, can
from portal.scoping import for_account

IN_ANOTHER_ACCOUNT = ("このユーザーはほかのアカウントにも所属しているため、パスワード再設定リンクは発行できません。"
                      "ご本人が「パスワードの変更」から変更するか、ポータルの運用担当者に再設定を依頼してください。")


def other_account_membership(session: Session, user_id: int, account_id: int) -> bool:
    """True when the person also belongs (active or disabled, not deleted) to an account other than this one."""
    # An admin who could set the password of someone in a second account could sign in there as them.
    return session.scalar(select(Membership.id).where(
        Membership.user_id == user_id, Membership.account_id != account_id,
        Membership.state != MembershipState.DELETED).limit(1)) is not None


def issue_reset(session: Session, user: User, account_id: int | None, issued_by_user_id: int | None, now: datetime,
                hours: int) -> str:
    """Create a reset link for the person (earlier unused ones stop working) and return its token; no commit."""
    session.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None)))
    token, digest = new_token()
    session.add(PasswordReset(user_id=user.id, token_hash=digest, account_id=account_id,
                              issued_by_user_id=issued_by_user_id, created_at=now,
                              expires_at=now + timedelta(hours=hours)))
    return token


def _still_allowed(session: Session, reset: PasswordReset) -> bool:
    """An admin's link works only while its rule still holds: the person is in that account only, and the
    issuer still manages its members."""
    if reset.account_id is None:  # the operator's CLI
        return True
    target = session.scalar(for_account(select(Membership), reset.account_id).where(
        Membership.user_id == reset.user_id, Membership.state != MembershipState.DELETED))
    issuer = session.scalar(for_account(select(Membership), reset.account_id).where(
        Membership.user_id == reset.issued_by_user_id, Membership.state == MembershipState.ACTIVE))
    return (target is not None and issuer is not None and can(issuer.role, Action.MANAGE_USERS)
            and not other_account_membership(session, reset.user_id, reset.account_id))


def find_reset(session: Session, token: str, now: datetime) -> PasswordReset | None:
    """The unused, unexpired reset link for this token that may still be used, or None."""
    reset = session.scalar(select(PasswordReset).where(PasswordReset.token_hash == hash_token(token or "")))
    if reset is None or reset.used_at is not None or reset.expires_at <= now or not _still_allowed(session, reset):
        return None
    return reset


def use_reset(session: Session, reset: PasswordReset, new_password: str, now: datetime) -> bool:
    """Set the password through the link once; every session of the person ends. False if already used."""
    # The conditional update makes two simultaneous submissions of one link count once.
    claimed = session.execute(update(PasswordReset).where(PasswordReset.id == reset.id,
                                                          PasswordReset.used_at.is_(None))
                              .values(used_at=now)).rowcount
    if claimed != 1:
        session.rollback()
        return False
    user = session.get(User, reset.user_id)
    user.password_hash = passwords.hash_password(new_password)
    end_user_sessions(session, user.id)
    session.commit()
    return True
