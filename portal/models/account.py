"""Accounts (companies), login identities, memberships and server-side login sessions."""
import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, string_enum, utcnow


class AccountStatus(str, enum.Enum):
    """Lifecycle of a company account."""

    ACTIVE = "active"
    DISABLED = "disabled"
    CANCELLED = "cancelled"


class Role(str, enum.Enum):
    """A member's role inside one account; the policy table maps roles to actions."""

    OWNER = "owner"
    ADMIN = "admin"
    MANAGER = "manager"
    USER = "user"


class MembershipState(str, enum.Enum):
    """A membership is kept (not removed) when deleted so that history keeps its names."""

    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"


class Account(Base):
    """A company using the portal."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[AccountStatus] = mapped_column(
        string_enum(AccountStatus, "account_status"), default=AccountStatus.ACTIVE)
    # 担当者閲覧制限: plain users only open customers assigned to them.
    viewing_restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    memberships: Mapped[list["Membership"]] = relationship(back_populates="account")


class User(Base):
    """A login identity (one person), which may belong to several accounts."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    memberships: Mapped[list["Membership"]] = relationship(back_populates="user")

    # Flask-Login protocol; the id handed to Flask-Login is the login session token.
    is_active = True
    is_anonymous = False
    is_authenticated = True
    session_token = None  # set per request from the login session (not a column)

    def get_id(self) -> str | None:
        """Return the server-side login session token, so revoking the row ends the session."""
        return self.session_token


class Membership(Base):
    """A user's role and state in one account; a mailbox link later belongs to one membership."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("account_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[Role] = mapped_column(string_enum(Role, "membership_role"))
    state: Mapped[MembershipState] = mapped_column(
        string_enum(MembershipState, "membership_state"), default=MembershipState.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    account: Mapped[Account] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")

    @property
    def is_usable(self) -> bool:
        """True when the member may work in this account now."""
        return self.state == MembershipState.ACTIVE and self.account.status == AccountStatus.ACTIVE


class LoginSession(Base):
    """A server-side session: deleting the row logs the browser out on its next request."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    membership_id: Mapped[int | None] = mapped_column(
        ForeignKey("memberships.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)

    user: Mapped[User] = relationship()
    membership: Mapped[Membership | None] = relationship()


class Invitation(Base):
    """An address asked to join an account; it becomes a member only when the person accepts with the link."""

    __tablename__ = "invitations"
    __table_args__ = (UniqueConstraint("account_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    # Typed by the inviting admin; used only when the address has no login yet (never shown from a login).
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(string_enum(Role, "invitation_role"))
    invited_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()

    account: Mapped[Account] = relationship()


class PasswordReset(Base):
    """A one-time link that sets a login's password; only its digest is stored."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The account whose admin issued it (None: the operator's CLI); checked again when the link is used.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    issued_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship(foreign_keys=[user_id])
