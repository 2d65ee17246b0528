"""Imported mail: one stored message per account, the links that saw it, customers, threads, import log."""
import enum
from datetime import datetime

from sqlalchemy import (BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, query_expression, relationship

from portal.models.base import Base, string_enum, utcnow
from portal.models.account import Membership
from portal.models.customer import Customer
from portal.models.mailbox import FolderRole


class Direction(str, enum.Enum):
    """受信 (seen in INBOX) or 送信 (seen in Sent)."""

    RECEIVED = "received"
    SENT = "sent"


class MailThread(Base):
    """A conversation: messages joined by References/In-Reply-To, else by subject and customer."""

    __tablename__ = "mail_threads"
    __table_args__ = (Index("ix_mail_threads_account_subject", "account_id", "subject_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    subject_key: Mapped[str] = mapped_column(String(300))
    last_message_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailMessage(Base):
    """An imported message of an account, stored once however many links saw it."""

    __tablename__ = "mail_messages"
    __table_args__ = (UniqueConstraint("account_id", "message_key"),
                      Index("ix_mail_messages_account_received", "account_id", "received_at"),
                      # Lets the list's 全N件 count under member/direction/date filters read the index only.
                      Index("ix_mail_messages_account_received_filters", "account_id", "received_at", "membership_id",
                            "direction"),
                      Index("ix_mail_messages_account_header_id", "account_id", "message_id_header"))

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    message_key: Mapped[str] = mapped_column(String(255))
    message_id_header: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str] = mapped_column(Text, default="")
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("mail_threads.id"), index=True)
    direction: Mapped[Direction] = mapped_column(string_enum(Direction, "mail_direction"))
    membership_id: Mapped[int | None] = mapped_column(ForeignKey("memberships.id"), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str] = mapped_column(String(254), default="")
    from_name: Mapped[str] = mapped_column(Text, default="")
    to_addresses: Mapped[str] = mapped_column(Text, default="")
    cc_addresses: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column()
    received_at: Mapped[datetime] = mapped_column()
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    # The HTML body as sanitised for its frame (remote images blocked), kept so a big mail is not re-sanitised on
    # every view; valid while safe_html_version equals portal.mails.html_view.RENDER_VERSION.
    safe_html: Mapped[str | None] = mapped_column(Text, deferred=True)
    safe_html_blocked: Mapped[int | None] = mapped_column(Integer)
    safe_html_height: Mapped[int | None] = mapped_column(Integer)
    safe_html_version: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    too_large: Mapped[bool] = mapped_column(Boolean, default=False)
    has_defects: Mapped[bool] = mapped_column(Boolean, default=False)
    defects: Mapped[str] = mapped_column(Text, default="")
    auto_submitted: Mapped[bool] = mapped_column(Boolean, default=False)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when the portal itself sent the message (a reply or an automation step): who sent it, tracked or not.
    sent_by_membership_id: Mapped[int | None] = mapped_column(ForeignKey("memberships.id"))
    tracked: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # The random id tracking tokens carry instead of the sequential id (None: untracked, or sent before it existed).
    tracking_id: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)

    thread: Mapped[MailThread | None] = relationship()
    membership: Mapped[Membership | None] = relationship(foreign_keys=[membership_id])
    # The first characters of the body, loaded only where a list asks for it (with_expression).
    snippet: Mapped[str | None] = query_expression()
    sources: Mapped[list["MailSource"]] = relationship(back_populates="message")
    customer_links: Mapped[list["MailCustomer"]] = relationship(back_populates="message")
    attachments: Mapped[list["MailAttachment"]] = relationship(back_populates="message")
    tracked_links: Mapped[list["TrackedLink"]] = relationship(back_populates="message",
                                                              order_by="TrackedLink.position")


# The text search index lives beside mail_messages but outside these models: the text search migration builds
# it with raw SQL (an FTS5 table and its shadow tables on SQLite, GIN trigram indexes on PostgreSQL), so schema
# comparisons must leave these names alone.
SEARCH_INDEX_TABLE = "mail_search"
SEARCH_INDEX_NAMES = frozenset({"ix_mail_messages_subject_trgm", "ix_mail_messages_body_trgm"})


def is_search_index_object(name: str | None) -> bool:
    """True for the search index's own tables and indexes, which no model declares."""
    return bool(name) and (name in SEARCH_INDEX_NAMES or name == SEARCH_INDEX_TABLE
                           or name.startswith(SEARCH_INDEX_TABLE + "_"))


class MailSource(Base):
    """One sighting of a message: which link, which folder, which UID (the idempotency key of a fetch)."""

    __tablename__ = "mail_sources"
    __table_args__ = (UniqueConstraint("link_id", "folder_role", "uidvalidity", "uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("mail_messages.id"), index=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("mailbox_links.id"), index=True)
    folder_role: Mapped[FolderRole] = mapped_column(string_enum(FolderRole, "source_folder_role"))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    message: Mapped[MailMessage] = relationship(back_populates="sources")


class MailCustomer(Base):
    """A customer a message was matched to."""

    __tablename__ = "mail_customers"
    # The customer timeline reads newest first per customer without touching other customers' rows.
    __table_args__ = (Index("ix_mail_customers_customer_message", "customer_id", "message_id"),)

    message_id: Mapped[int] = mapped_column(ForeignKey("mail_messages.id"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)

    message: Mapped[MailMessage] = relationship(back_populates="customer_links")
    customer: Mapped[Customer] = relationship()


class MailAttachment(Base):
    """A file attached to (or inline in) an imported message."""

    __tablename__ = "mail_attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("mail_messages.id"), index=True)
    filename: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    content_id: Mapped[str | None] = mapped_column(String(998))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[bytes] = mapped_column(LargeBinary)

    message: Mapped[MailMessage] = relationship(back_populates="attachments")


class MailTombstone(Base):
    """A message deleted in the portal: its key stays so no pass, link or re-link of the account imports it again.

    Only the key is kept (no subject, no sender): the deleted mail is gone from the portal for good."""

    __tablename__ = "mail_tombstones"
    __table_args__ = (UniqueConstraint("account_id", "message_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    message_key: Mapped[str] = mapped_column(String(255))
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class ImportLogEntry(Base):
    """A fetched message that was not imported and the rule that kept it out (for 「なぜ取り込まれないのか」)."""

    __tablename__ = "import_log"
    __table_args__ = (Index("ix_import_log_link_created", "link_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("mailbox_links.id"))
    folder_role: Mapped[FolderRole] = mapped_column(string_enum(FolderRole, "log_folder_role"))
    uid: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str] = mapped_column(Text, default="")
    to_addresses: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailTemplate(Base):
    """メールテンプレート: a subject and body with placeholders; shared ones are edited by managers and above."""

    __tablename__ = "mail_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # None for a shared template; otherwise the member who owns (and may edit) it.
    owner_membership_id: Mapped[int | None] = mapped_column(ForeignKey("memberships.id"))
    name: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(255), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    owner_membership: Mapped[Membership | None] = relationship()


class MailDraft(Base):
    """What a member typed in a reply or a new mail that could not be sent yet, so nothing is lost.

    A reply's draft is keyed by the answered message; a new mail's (reply_to_message_id NULL) by its customer.
    """

    __tablename__ = "mail_drafts"
    __table_args__ = (UniqueConstraint("membership_id", "reply_to_message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"))
    reply_to_message_id: Mapped[int | None] = mapped_column(ForeignKey("mail_messages.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    to_address: Mapped[str] = mapped_column(String(254), default="")
    cc_addresses: Mapped[str] = mapped_column(Text, default="", server_default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    template_id: Mapped[int | None] = mapped_column(ForeignKey("mail_templates.id", ondelete="SET NULL"))
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TrackedLink(Base):
    """A link of a portal-sent message, rewritten to /t/c/<token>; the destination is only ever read from here."""

    __tablename__ = "tracked_links"
    __table_args__ = (UniqueConstraint("message_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("mail_messages.id"))
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)

    message: Mapped[MailMessage] = relationship(back_populates="tracked_links")


class TrackingKind(str, enum.Enum):
    """An open (the tracking image was fetched) or a click (a tracked link was followed)."""

    OPEN = "open"
    CLICK = "click"


class TrackingEvent(Base):
    """One open or click of a portal-sent message; machine fetchers are kept but labelled."""

    __tablename__ = "tracking_events"
    __table_args__ = (Index("ix_tracking_events_message", "message_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("mail_messages.id"))
    kind: Mapped[TrackingKind] = mapped_column(string_enum(TrackingKind, "tracking_kind"))
    link_id: Mapped[int | None] = mapped_column(ForeignKey("tracked_links.id"))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    # Set to a label (e.g. "Gmail画像プロキシ") when a known machine fetched it rather than a person.
    machine: Mapped[str | None] = mapped_column(String(100))
    # A keyed hash of the fetching client's address: one counted open per client per window (no address stored).
    client_key: Mapped[str | None] = mapped_column(String(32))

    link: Mapped[TrackedLink | None] = relationship()
