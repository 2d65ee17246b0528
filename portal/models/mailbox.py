"""Recommended mailbox server settings (presets), mailbox links and their per-folder import boundary."""
import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.account import Membership
from portal.models.base import Base, string_enum, utcnow


class Security(str, enum.Enum):
    """How a mail connection is protected."""

    SSL = "ssl"
    STARTTLS = "starttls"
    NONE = "none"


class AuthMethod(str, enum.Enum):
    """How a mailbox logs in: a password, or OAuth2 tokens (XOAUTH2)."""

    PASSWORD = "password"
    OAUTH2 = "oauth2"


class OAuthProvider(str, enum.Enum):
    """Who issues the tokens of an OAuth2 preset."""

    MICROSOFT = "microsoft"
    GOOGLE = "google"
    OIDC = "oidc"


class LinkState(str, enum.Enum):
    """A mailbox link's state as the member sees it."""

    ACTIVE = "active"        # 連携中
    ERROR = "error"          # エラー
    REAUTH = "reauth"        # 要再認証
    UNLINKED = "unlinked"    # 連携解除


class UnlinkReason(str, enum.Enum):
    """Why a link stopped."""

    BY_MEMBER = "by_member"
    MEMBER_DISABLED = "member_disabled"
    MEMBER_DELETED = "member_deleted"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_CANCELLED = "account_cancelled"
    FEATURE_OFF = "feature_off"


class FolderRole(str, enum.Enum):
    """Which synced folder: received mail or sent mail."""

    INBOX = "inbox"
    SENT = "sent"


class MailboxPreset(Base):
    """メールボックスサーバーの推奨設定: server settings members can pick when linking."""

    __tablename__ = "mailbox_presets"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    imap_host: Mapped[str] = mapped_column(String(253))
    imap_port: Mapped[int] = mapped_column(Integer)
    imap_security: Mapped[Security] = mapped_column(string_enum(Security, "preset_imap_security"))
    smtp_host: Mapped[str] = mapped_column(String(253))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_security: Mapped[Security] = mapped_column(string_enum(Security, "preset_smtp_security"))
    # False for a relay that takes no login (SMTP認証なし); only over TLS unless the operator allows plaintext.
    smtp_auth: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    auth_method: Mapped[AuthMethod] = mapped_column(string_enum(AuthMethod, "preset_auth_method"),
                                                    default=AuthMethod.PASSWORD, server_default="password")
    oauth_provider: Mapped[OAuthProvider | None] = mapped_column(string_enum(OAuthProvider, "preset_oauth_provider"))
    oauth_discovery_url: Mapped[str | None] = mapped_column(String(2000))
    oauth_scopes: Mapped[str | None] = mapped_column(String(1000))
    oauth_tenant: Mapped[str | None] = mapped_column(String(254))
    oauth_client_id: Mapped[str | None] = mapped_column(String(255))
    # Encrypted with the mailbox key, bound to this row and column; never shown again.
    oauth_client_secret_encrypted: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def uses_oauth(self) -> bool:
        """True for an OAuth2 preset."""
        return self.auth_method == AuthMethod.OAUTH2


class MailboxLink(Base):
    """One member's linked mailbox; it keeps its own copy of the server settings."""

    @property
    def uses_oauth(self) -> bool:
        """True for a link that logs in with OAuth2 tokens."""
        return self.auth_method == AuthMethod.OAUTH2

    __tablename__ = "mailbox_links"
    __table_args__ = (
        # A membership has at most one link that is not unlinked; old links stay as history.
        Index("uq_mailbox_links_membership_live", "membership_id", unique=True,
              sqlite_where=text("state <> 'unlinked'"), postgresql_where=text("state <> 'unlinked'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    imap_host: Mapped[str] = mapped_column(String(253))
    imap_port: Mapped[int] = mapped_column(Integer)
    imap_security: Mapped[Security] = mapped_column(string_enum(Security, "link_imap_security"))
    imap_username: Mapped[str] = mapped_column(String(254))
    imap_password_encrypted: Mapped[str] = mapped_column(Text, default="")
    smtp_host: Mapped[str] = mapped_column(String(253))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_security: Mapped[Security] = mapped_column(string_enum(Security, "link_smtp_security"))
    smtp_username: Mapped[str] = mapped_column(String(254))
    smtp_password_encrypted: Mapped[str] = mapped_column(Text, default="")
    smtp_auth: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())  # see MailboxPreset
    auth_method: Mapped[AuthMethod] = mapped_column(string_enum(AuthMethod, "link_auth_method"),
                                                    default=AuthMethod.PASSWORD, server_default="password")
    # OAuth2 links: the preset holding the provider app (a preset in use cannot be deleted), the signed-in
    # subject (a re-consent must be the same account), and the tokens, encrypted and bound like passwords.
    preset_id: Mapped[int | None] = mapped_column(ForeignKey("mailbox_presets.id"), index=True)
    oauth_subject: Mapped[str | None] = mapped_column(String(255))
    oauth_access_token_encrypted: Mapped[str] = mapped_column(Text, default="", server_default="")
    oauth_refresh_token_encrypted: Mapped[str] = mapped_column(Text, default="", server_default="")
    oauth_expires_at: Mapped[datetime | None] = mapped_column()
    state: Mapped[LinkState] = mapped_column(string_enum(LinkState, "link_state"), default=LinkState.ACTIVE)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column()
    last_synced_at: Mapped[datetime | None] = mapped_column()
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)
    unlinked_at: Mapped[datetime | None] = mapped_column()
    unlink_reason: Mapped[UnlinkReason | None] = mapped_column(string_enum(UnlinkReason, "unlink_reason"))
    # Sync bookkeeping: consecutive failures drive the backoff; the lease keeps two processes apart.
    failure_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()

    membership: Mapped[Membership] = relationship()
    preset: Mapped[MailboxPreset | None] = relationship()
    folders: Mapped[list["MailboxFolder"]] = relationship(back_populates="link", order_by="MailboxFolder.id")


class MailboxFolder(Base):
    """A synced folder of a link: its UIDVALIDITY, the UIDNEXT at link time (the boundary) and progress."""

    __tablename__ = "mailbox_folders"
    __table_args__ = (UniqueConstraint("link_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("mailbox_links.id"), index=True)
    role: Mapped[FolderRole] = mapped_column(string_enum(FolderRole, "folder_role"))
    name: Mapped[str] = mapped_column(String(500))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    boundary_uidnext: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    # Set, in the same commit as the new UIDVALIDITY, while a re-baseline's rescan is unfinished: the date rule
    # (the link time) every rescanned message must meet. Old UIDs mean nothing then, so a pass that finds it set
    # resumes the rescan by date instead of trusting the reset checkpoint.
    rescan_since: Mapped[datetime | None] = mapped_column()

    link: Mapped[MailboxLink] = relationship(back_populates="folders")
