"""Authentication and server-side login sessions, without Flask."""
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from portal import passwords
from portal.models import LoginSession, Membership, PasswordReset, User


def normalise_email(email: str) -> str:
    """Trim and lower-case an email address for storage and comparison."""
    return (email or "").strip().lower()


def hash_token(token: str) -> str:
    """Store only a digest of a session or one-time link token, so a database leak is not a session leak."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh unguessable token and its digest (the token itself is never stored)."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


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
    token, digest = new_token()
    session.add(LoginSession(token_hash=digest, user_id=user.id,
                             membership_id=membership.id if membership else None,
                             created_at=now, expires_at=now + timedelta(hours=hours)))
    session.commit()
    return token


@dataclass(frozen=True)
class SignedIn:
    """A started login session: the person, the token for their cookie, and the account they work in."""

    user: User
    token: str
    membership: Membership | None  # their only usable account, chosen at once; None: they choose on the next page


def start_fresh_session(session: Session, user: User, membership: Membership | None, now: datetime, hours: int,
                        replacing_token: str | None = None) -> SignedIn:
    """End the session being replaced (someone else may have been signed in on this browser), start a new one."""
    if replacing_token is not None:
        end_login_session(session, replacing_token)
    return SignedIn(user, start_login_session(session, user, now, hours, membership), membership)


def sign_in(session: Session, email: str, password: str, now: datetime, hours: int,
            replacing_token: str | None = None) -> SignedIn | None:
    """Check the password and start a login session, in the only usable account if there is just one.

    None when the address, the password or every membership refuses; nothing changes then.
    """
    user = authenticate(session, email, password)
    if user is None:
        return None
    memberships = usable_memberships(user)
    only = memberships[0] if len(memberships) == 1 else None
    return start_fresh_session(session, user, only, now, hours, replacing_token)


def find_login_session(session: Session, token: str, now: datetime) -> LoginSession | None:
    """The live login session for a token, or None when it ended or expired."""
    login_session = session.scalar(select(LoginSession).where(LoginSession.token_hash == hash_token(token)))
    if login_session is None or login_session.expires_at <= now:
        return None
    return login_session


def end_login_session(session: Session, token: str) -> None:
    """Delete the login session so the cookie that carried it is worthless."""
    session.execute(delete(LoginSession).where(LoginSession.token_hash == hash_token(token)))
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


def end_user_sessions(session: Session, user_id: int, keep_token: str | None = None) -> int:
    """End every live session of a person except the one carrying keep_token (no commit); returns how many."""
    stmt = delete(LoginSession).where(LoginSession.user_id == user_id)
    if keep_token is not None:
        stmt = stmt.where(LoginSession.token_hash != hash_token(keep_token))
    return session.execute(stmt).rowcount


def change_password(session: Session, user: User, current_password: str, new_password: str,
                    keep_token: str | None) -> bool:
    """Set a new password when the current one is right; every other session of the person ends."""
    if not passwords.verify_password(user.password_hash, current_password):
        return False
    user.password_hash = passwords.hash_password(new_password)
    end_user_sessions(session, user.id, keep_token)
    # A reset link still in someone's hands would otherwise undo the change.
    session.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None)))
    session.commit()
    return True
