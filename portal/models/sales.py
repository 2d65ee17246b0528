"""セールスオートメーション: sequences of timed template mails, and the customers enrolled in them."""
import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.account import Membership
from portal.models.base import Base, string_enum, utcnow
from portal.models.customer import Customer
from portal.models.mail import MailTemplate


class Sequence(Base):
    """A named list of steps; it may stop itself when the customer writes back."""

    __tablename__ = "sales_sequences"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # 「お客様からメールを受信したら、セールスオートメーションを自動で停止」
    stop_on_reply: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    steps: Mapped[list["SequenceStep"]] = relationship(back_populates="sequence", order_by="SequenceStep.position",
                                                       cascade="all, delete-orphan")


class SequenceStep(Base):
    """Wait this many days (after enrolment or the previous step), then send this template."""

    __tablename__ = "sales_sequence_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sales_sequences.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    wait_days: Mapped[int] = mapped_column(Integer, default=0)
    template_id: Mapped[int] = mapped_column(ForeignKey("mail_templates.id"))

    sequence: Mapped[Sequence] = relationship(back_populates="steps")
    template: Mapped[MailTemplate] = relationship()


class EnrollmentState(str, enum.Enum):
    """Where a customer is in a sequence."""

    ACTIVE = "active"        # 実行中
    COMPLETED = "completed"  # 完了
    STOPPED = "stopped"      # 停止


class StopReason(str, enum.Enum):
    """Why an enrolment stopped."""

    CUSTOMER_REPLIED = "customer_replied"  # お客様からメールを受信
    BY_MEMBER = "by_member"                # 手動で停止
    CUSTOMER_DELETED = "customer_deleted"  # 顧客が削除された


class Enrollment(Base):
    """One customer in one sequence: the next step, when it is due, and how it ended."""

    __tablename__ = "sales_enrollments"
    __table_args__ = (
        # A customer runs a sequence at most once at a time; finished runs stay as history.
        Index("uq_sales_enrollments_live", "sequence_id", "customer_id", unique=True,
              sqlite_where=text("state = 'active'"), postgresql_where=text("state = 'active'")),
        Index("ix_sales_enrollments_due", "state", "next_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sales_sequences.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    enrolled_by_membership_id: Mapped[int | None] = mapped_column(ForeignKey("memberships.id"))
    state: Mapped[EnrollmentState] = mapped_column(string_enum(EnrollmentState, "enrollment_state"),
                                                   default=EnrollmentState.ACTIVE)
    next_position: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("mail_threads.id"))
    last_message_id: Mapped[int | None] = mapped_column(ForeignKey("mail_messages.id"))
    last_error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column()
    stop_reason: Mapped[StopReason | None] = mapped_column(string_enum(StopReason, "enrollment_stop_reason"))
    stop_message_id: Mapped[int | None] = mapped_column(ForeignKey("mail_messages.id"))

    sequence: Mapped[Sequence] = relationship()
    customer: Mapped[Customer] = relationship()
    enrolled_by: Mapped[Membership | None] = relationship()
