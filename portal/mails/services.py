"""Reading imported mail: the account's mail list with filters, a customer's timeline, one thread."""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, joinedload, load_only, selectinload, with_expression

from portal.customers.services import escape_like
from portal.models import (Customer, Direction, MailAttachment, MailCustomer, MailMessage, Membership,
                           MembershipState, User)

JST = ZoneInfo("Asia/Tokyo")
SNIPPET_CHARS = 120

# Columns a list row shows; bodies and raw bytes stay in the database.
_LIST_COLUMNS = (MailMessage.id, MailMessage.thread_id, MailMessage.direction, MailMessage.membership_id,
                 MailMessage.subject, MailMessage.from_address, MailMessage.from_name, MailMessage.to_addresses,
                 MailMessage.received_at, MailMessage.sent_by_membership_id, MailMessage.auto_submitted)


@dataclass(frozen=True)
class MailFilters:
    """The mail list's filters; empty values filter nothing."""

    customer_id: int | None = None
    membership_id: int | None = None
    direction: Direction | None = None
    date_from: date | None = None
    date_to: date | None = None
    text: str = ""

    @property
    def active(self) -> bool:
        """True when any filter is set."""
        return any((self.customer_id, self.membership_id, self.direction, self.date_from, self.date_to,
                    self.text.strip()))


def _jst_midnight(day: date) -> datetime:
    """The start of a day in Japan time, as UTC (dates on screen are Japan dates)."""
    return datetime.combine(day, time.min, tzinfo=JST).astimezone(timezone.utc)


def _row_options(stmt: Select) -> Select:
    """Load only list columns, plus each row's customers and member in two extra queries, never one per row."""
    return stmt.options(
        load_only(*_LIST_COLUMNS),
        selectinload(MailMessage.customer_links).joinedload(MailCustomer.customer)
        .load_only(Customer.id, Customer.name, Customer.deleted_at, Customer.assigned_membership_id),
        selectinload(MailMessage.membership).joinedload(Membership.user).load_only(User.id, User.name))


def _customer_messages(account_id: int, customer_id: int) -> Select:
    """The customer's messages, reached through the customer and scoped by the customer's account."""
    # Starting from the customer keeps SQLite's planner off the account-wide received_at index, which in a
    # one-account database would walk every message (bench/list_bench.py showed 300 ms at 100,000 messages).
    return (select(MailMessage).join(MailCustomer, MailCustomer.message_id == MailMessage.id)
            .join(Customer, Customer.id == MailCustomer.customer_id)
            .where(MailCustomer.customer_id == customer_id, Customer.account_id == account_id))


def mail_list(account_id: int, filters: MailFilters) -> Select:
    """Every imported message of the account matching the filters, newest first."""
    if filters.customer_id:
        stmt = _customer_messages(account_id, filters.customer_id)
    else:
        stmt = select(MailMessage).where(MailMessage.account_id == account_id)
    if filters.membership_id:
        stmt = stmt.where(MailMessage.membership_id == filters.membership_id)
    if filters.direction:
        stmt = stmt.where(MailMessage.direction == filters.direction)
    if filters.date_from:
        stmt = stmt.where(MailMessage.received_at >= _jst_midnight(filters.date_from))
    if filters.date_to:
        stmt = stmt.where(MailMessage.received_at < _jst_midnight(filters.date_to + timedelta(days=1)))
    text = filters.text.strip()
    if text:
        pattern = "%" + escape_like(text) + "%"
        stmt = stmt.where(or_(MailMessage.subject.ilike(pattern, escape="\\"),
                              MailMessage.text_body.ilike(pattern, escape="\\"),
                              MailMessage.html_body.ilike(pattern, escape="\\")))
    return _row_options(stmt.order_by(MailMessage.received_at.desc(), MailMessage.id.desc()))


def filter_members(session: Session, account_id: int) -> list[Membership]:
    """Members to filter by: everyone not deleted, also disabled ones whose mail stays listed."""
    return list(session.scalars(select(Membership).options(joinedload(Membership.user)).where(
        Membership.account_id == account_id, Membership.state != MembershipState.DELETED).order_by(Membership.id)))


def timeline_threads(account_id: int, customer_id: int) -> Select:
    """The customer's threads, most recently active first (one row per thread id)."""
    last = func.max(MailMessage.received_at)
    return (_customer_messages(account_id, customer_id).with_only_columns(MailMessage.thread_id)
            .group_by(MailMessage.thread_id).order_by(last.desc(), MailMessage.thread_id.desc()))


def timeline_messages(session: Session, account_id: int, customer_id: int,
                      thread_ids: list[int]) -> dict[int, list[MailMessage]]:
    """The customer's messages of the given threads, newest first, with a short snippet of each body."""
    if not thread_ids:
        return {}
    snippet = func.substr(func.coalesce(MailMessage.text_body, ""), 1, SNIPPET_CHARS)
    stmt = _row_options(
        _customer_messages(account_id, customer_id).where(MailMessage.thread_id.in_(thread_ids))
        .order_by(MailMessage.received_at.desc(), MailMessage.id.desc())).options(
        with_expression(MailMessage.snippet, snippet))
    grouped: dict[int, list[MailMessage]] = {thread_id: [] for thread_id in thread_ids}
    for message in session.scalars(stmt).unique():
        grouped[message.thread_id].append(message)
    return grouped


def thread_messages(session: Session, message: MailMessage) -> list[MailMessage]:
    """Every message of the message's thread in the account, oldest first (the message alone without a thread)."""
    if message.thread_id is None:
        return [message]
    return list(session.scalars(
        select(MailMessage).where(MailMessage.account_id == message.account_id,
                                  MailMessage.thread_id == message.thread_id)
        .options(selectinload(MailMessage.attachments).load_only(
                     MailAttachment.id, MailAttachment.filename, MailAttachment.content_type,
                     MailAttachment.size_bytes, MailAttachment.content_id, MailAttachment.inline),
                 selectinload(MailMessage.customer_links).joinedload(MailCustomer.customer),
                 selectinload(MailMessage.membership).joinedload(Membership.user))
        .order_by(MailMessage.received_at, MailMessage.id)))


def account_attachment(session: Session, account_id: int, attachment_id: int) -> MailAttachment | None:
    """An attachment of one of the account's messages, or None (another account's file does not exist)."""
    return session.scalar(select(MailAttachment).join(MailMessage, MailMessage.id == MailAttachment.message_id)
                          .where(MailAttachment.id == attachment_id, MailMessage.account_id == account_id))


INLINE_IMAGE_SALT = "portal.mails.inline-image"
INLINE_IMAGE_MAX_AGE = 24 * 3600
INLINE_IMAGE_TYPES = {"image/png", "image/gif", "image/jpeg", "image/webp"}


def inline_image_token(secret_key: str, account_id: int, attachment_id: int) -> str:
    """A day-long signature naming one account's inline image, for the sandboxed mail frame (it sends no cookies)."""
    return URLSafeTimedSerializer(secret_key, salt=INLINE_IMAGE_SALT).dumps([account_id, attachment_id])


def read_inline_image_token(secret_key: str, token: str) -> tuple[int, int] | None:
    """(account id, attachment id) of a genuine, unexpired token, else None."""
    try:
        payload = URLSafeTimedSerializer(secret_key, salt=INLINE_IMAGE_SALT).loads(token, max_age=INLINE_IMAGE_MAX_AGE)
    except (BadSignature, ValueError):
        return None
    if isinstance(payload, list) and len(payload) == 2 and all(type(value) is int for value in payload):
        return payload[0], payload[1]
    return None


@dataclass
class SearchPage:
    """One page of a text search: its rows and whether more follow (no total: counting would read every body)."""

    items: list[MailMessage]
    page: int
    per_page: int
    has_next: bool

    @property
    def has_prev(self) -> bool:
        """True past the first page."""
        return self.page > 1

    @property
    def first(self) -> int:
        """The 1-based number of the first row shown."""
        return (self.page - 1) * self.per_page + 1 if self.items else 0

    @property
    def last(self) -> int:
        """The 1-based number of the last row shown."""
        return self.first + len(self.items) - 1 if self.items else 0


def search_page(session: Session, stmt: Select, page: int, per_page: int) -> SearchPage:
    """Fetch one page plus one row: newest-first matches stop the scan early, a count would not."""
    page = max(page, 1)
    rows = list(session.scalars(stmt.limit(per_page + 1).offset((page - 1) * per_page)).unique())
    return SearchPage(rows[:per_page], page, per_page, len(rows) > per_page)
