"""Authentication and server-side login sessions, without Flask."""
import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from portal import passwords
from portal.models import LoginSession, Membership, User


def normalise_email(email: str) -> str:
    """Trim and lower-case an email address for storage and comparison."""
    return (email or "").strip().lower()


def _hash_token(token: str) -> str:
    """Store only a digest of the session token, so a database leak is not a session leak."""
    return hashlib.sha256(token.encode()).hexdigest()


def usable_memberships(user: User) -> list[Membership]:
    """Memberships in which the user may work now, ordered by account name."""
    return sorted((m for m in user.memberships if m.is_usable), key=lambda m: (m.account.name, m.id))


def authenticate(session: Session, email: str, password: str) -> User | None:
    """Return the user when the password is right and they can work in at least one account."""
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        passwords.burn_time(password)
        return None
    if not passwords.verify_password(user.password_hash, password):
        return None
    if not usable_memberships(user):
        return None
    return user


def start_login_session(session: Session, user: User, now: datetime, hours: int,
                        membership: Membership | None) -> str:
    """Create a login session row and return its token (the only place the token exists)."""
    token = secrets.token_urlsafe(32)
    session.add(LoginSession(token_hash=_hash_token(token), user_id=user.id,
                             membership_id=membership.id if membership else None,
                             created_at=now, expires_at=now + timedelta(hours=hours)))
    session.commit()
    return token


def find_login_session(session: Session, token: str, now: datetime) -> LoginSession | None:
    """The live login session for a token, or None when it ended or expired."""
    login_session = session.scalar(select(LoginSession).where(LoginSession.token_hash == _hash_token(token)))
    if login_session is None or login_session.expires_at <= now:
        return None
    return login_session


def end_login_session(session: Session, token: str) -> None:
    """Delete the login session so the cookie that carried it is worthless."""
    session.execute(delete(LoginSession).where(LoginSession.token_hash == _hash_token(token)))
    session.commit()


def revoke_membership_sessions(session: Session, membership_id: int) -> None:
    """End every live session working in this membership (no commit: part of the caller's change)."""
    session.execute(delete(LoginSession).where(LoginSession.membership_id == membership_id))


def choose_membership(session: Session, login_session: LoginSession, membership_id: int) -> Membership | None:
    """Switch the login session to one of the user's usable memberships; None when not allowed."""
    membership = session.get(Membership, membership_id)
    if membership is None or membership.user_id != login_session.user_id or not membership.is_usable:
        return None
    login_session.membership_id = membership.id
    session.commit()
    return membership


def purge_expired_sessions(session: Session, now: datetime) -> int:
    """Delete expired login sessions; returns how many went."""
    result = session.execute(delete(LoginSession).where(LoginSession.expires_at <= now))
    session.commit()
    return result.rowcount
