"""Reading imported mail: the account's mail list with filters, a customer's timeline, one thread."""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask_sqlalchemy.pagination import SelectPagination
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, joinedload, load_only, selectinload, with_expression

from portal.mails import search
from portal.models import (Customer, Direction, MailAttachment, MailCustomer, MailMessage, Membership,
                           MembershipState, User)
from portal.scoping import for_account

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
    stmt = (select(MailMessage).join(MailCustomer, MailCustomer.message_id == MailMessage.id)
            .join(Customer, Customer.id == MailCustomer.customer_id)
            .where(MailCustomer.customer_id == customer_id))
    return for_account(stmt, account_id, Customer)


def _filtered(account_id: int, filters: MailFilters, list_indexes: bool = True) -> Select:
    """The account's messages under every filter but the text, in no order.

    list_indexes=False keeps SQLite off the account and member indexes, for a search that starts from the text
    index's matches (SQLite has no statistics and would otherwise walk every message of the account).
    """
    account, member = MailMessage.account_id, MailMessage.membership_id
    if not list_indexes:
        account, member = search.without_index(account), search.without_index(member)
    if filters.customer_id:
        stmt = _customer_messages(account_id, filters.customer_id)
    else:
        # Not for_account: the scope must stay on the (possibly index-hidden) column chosen above.
        stmt = select(MailMessage).where(account == account_id)
    if filters.membership_id:
        stmt = stmt.where(member == filters.membership_id)
    if filters.direction:
        stmt = stmt.where(MailMessage.direction == filters.direction)
    if filters.date_from:
        stmt = stmt.where(MailMessage.received_at >= _jst_midnight(filters.date_from))
    if filters.date_to:
        stmt = stmt.where(MailMessage.received_at < _jst_midnight(filters.date_to + timedelta(days=1)))
    return stmt


def _newest_first(stmt: Select) -> Select:
    """Newest first; the id breaks ties so pages never overlap."""
    return stmt.order_by(MailMessage.received_at.desc(), MailMessage.id.desc())


def mail_list(account_id: int, filters: MailFilters) -> Select:
    """Every imported message of the account matching the filters but the text, newest first (see search_page)."""
    return _row_options(_newest_first(_filtered(account_id, filters)))


def filter_members(session: Session, account_id: int) -> list[Membership]:
    """Members to filter by: everyone not deleted, also disabled ones whose mail stays listed."""
    return list(session.scalars(for_account(select(Membership), account_id).options(joinedload(Membership.user))
                                .where(Membership.state != MembershipState.DELETED).order_by(Membership.id)))


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
        for_account(select(MailMessage), message.account_id).where(MailMessage.thread_id == message.thread_id)
        .options(selectinload(MailMessage.attachments).load_only(
                     MailAttachment.id, MailAttachment.filename, MailAttachment.content_type,
                     MailAttachment.size_bytes, MailAttachment.content_id, MailAttachment.inline),
                 selectinload(MailMessage.customer_links).joinedload(MailCustomer.customer),
                 selectinload(MailMessage.membership).joinedload(Membership.user))
        .order_by(MailMessage.received_at, MailMessage.id)))


def account_attachment(session: Session, account_id: int, attachment_id: int) -> MailAttachment | None:
    """An attachment of one of the account's messages, or None (another account's file does not exist)."""
    attachments = select(MailAttachment).join(MailMessage, MailMessage.id == MailAttachment.message_id)
    return session.scalar(for_account(attachments, account_id, MailMessage).where(MailAttachment.id == attachment_id))


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


class ListPage(SelectPagination):
    """A page of the mail list whose count stops a little past the page: counting a million rows reads them all."""

    def __init__(self, count_cap: int, **kwargs):
        """count_cap: how many rows past this page the count may read (rounded up to a multiple of it)."""
        self.count_cap = count_cap
        self.total_capped = False
        super().__init__(**kwargs)

    def _query_count(self) -> int:
        """Rows up to the next multiple of count_cap past this page; total_capped when there are more."""
        limit = ((self._query_offset + self.per_page) // self.count_cap + 1) * self.count_cap
        # Only the id: the inner query then reads an index alone, never the rows (a LIMIT keeps it a subquery).
        rows = (self._query_args["select"].with_only_columns(MailMessage.id).order_by(None).limit(limit + 1)
                .subquery())
        counted = self._query_args["session"].scalar(select(func.count()).select_from(rows))
        self.total_capped = counted > limit
        return min(counted, limit)

    def iter_pages(self, **kwargs):
        """Page numbers; no right edge when the total is only a lower bound (there is no known last page)."""
        if self.total_capped:
            kwargs.setdefault("right_edge", 0)
        return super().iter_pages(**kwargs)


def list_page(session: Session, account_id: int, filters: MailFilters, page: int, per_page: int,
              count_cap: int) -> ListPage:
    """One page of the mail list (no text search), with a total counted up to a cap."""
    return ListPage(count_cap, select=mail_list(account_id, filters), session=session, page=max(page, 1),
                    per_page=per_page, max_per_page=None, error_out=False)


@dataclass
class SearchPage:
    """One page of a text search: its rows and whether more follow (no total: counting would read every body)."""

    items: list[MailMessage]
    page: int
    per_page: int
    has_next: bool
    # Set when the search read only the newest `window` messages of the list: "short" (no word of 3+ characters)
    # or "common" (the index could not narrow the words down in time).
    window: int | None = None
    window_reason: str | None = None
    stopped: bool = False  # the search ran out of time and shows nothing

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


@dataclass(frozen=True)
class SearchLimits:
    """How far a text search may read; the defaults keep a search of a million messages near 100 ms or less."""

    short_word_window: int = 5_000  # newest messages read when the index cannot help
    sorted_matches: int = 5_000  # index matches fetched and sorted by date; more, and the list is walked
    newest_rows: int = 500  # newest messages read first: a word in most messages fills a page there
    index_budget_ms: int = 300  # for the index lookup; past it, the words are too common to narrow anything
    walk_budget_ms: int = 3_000  # for walking the list past a common word's matches (a deep page)


def _since_newest(session: Session, stmt: Select, rows: int) -> Select:
    """The statement limited to the newest `rows` messages it would list (by date, read from the list index)."""
    oldest = session.scalar(_newest_first(stmt).with_only_columns(MailMessage.received_at).offset(rows - 1).limit(1))
    return stmt if oldest is None else stmt.where(MailMessage.received_at >= oldest)


def search_page(session: Session, account_id: int, filters: MailFilters, page: int, per_page: int,
                limits: SearchLimits = SearchLimits()) -> SearchPage:
    """One page of a text search, newest first, plus one row to know whether 次へ leads anywhere.

    How it reads, cheapest first (see portal/mails/search.py for why):
    1. only short words: LIKE over the newest `short_word_window` messages, and the page says so;
    2. the newest `newest_rows` messages with LIKE: a word found in most mail fills the page here;
    3. the trigram index, within `index_budget_ms`: up to `sorted_matches` matches are fetched by id and sorted;
       more, and the list is walked newest first with LIKE, which finds a page quickly among so many (with a
       short word as well, (1) instead: the short word may be rare); a word the index cannot narrow in time
       (every trigram in most messages) falls back to (1) too, and the page says why.
    """
    page = max(page, 1)
    words = search.split_words(filters.text)
    wanted, offset = per_page + 1, (page - 1) * per_page

    def fetch(stmt: Select, checked: tuple[str, ...]) -> list[MailMessage]:
        """One page (plus one row) of the statement's messages that contain the checked words, newest first."""
        stmt = _row_options(_newest_first(search.containing(session, stmt, checked)))
        return list(session.scalars(stmt.limit(wanted).offset(offset)).unique())

    def done(rows: list[MailMessage], **notes) -> SearchPage:
        """The page of these rows."""
        return SearchPage(rows[:per_page], page, per_page, len(rows) > per_page, **notes)

    def windowed(reason: str) -> SearchPage:
        """Every word by LIKE, over the newest messages only."""
        window = limits.short_word_window
        rows = fetch(_since_newest(session, _filtered(account_id, filters), window), words.all)
        return done(rows, window=window, window_reason=reason)

    if not words.indexed:
        return windowed("short")
    rows = fetch(_since_newest(session, _filtered(account_id, filters), limits.newest_rows), words.all)
    if len(rows) == wanted:
        return done(rows)
    try:
        with search.time_limit(session, limits.index_budget_ms):
            matches = search.index_matches(session, words.indexed, limits.sorted_matches + 1)
    except search.SearchTimeout:
        return windowed("common")
    if len(matches) <= limits.sorted_matches:
        # The ids already contain the long words; only the short ones are left to check.
        stmt = _filtered(account_id, filters, list_indexes=False).where(MailMessage.id.in_(matches))
        return done(fetch(stmt, words.short))
    if words.short:
        # Many messages have the long words but the newest ones lack the short word: walking would read the
        # whole history for a word the index cannot see.
        return windowed("short")
    try:
        with search.time_limit(session, limits.walk_budget_ms):
            return done(fetch(_filtered(account_id, filters), words.all))
    except search.SearchTimeout:
        return SearchPage([], page, per_page, False, stopped=True)
