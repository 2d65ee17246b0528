"""Customers (顧客情報) of an account."""
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.account import Account, Membership
from portal.models.base import Base, utcnow


class Customer(Base):
    """A customer whose mail the portal will import; deleted customers stay for history."""

    __tablename__ = "customers"
    __table_args__ = (
        # Unique among live customers only, so a deleted customer's address can be registered again.
        Index("uq_customers_account_email_live", "account_id", "email", unique=True,
              sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    company: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254))
    assigned_membership_id: Mapped[int | None] = mapped_column(
        ForeignKey("memberships.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)

    account: Mapped[Account] = relationship()
    assigned_membership: Mapped[Membership | None] = relationship()
