"""Mail list benchmark: M messages, C customers; list, filter, timeline and text search p95 through the Flask test client."""
# 1. Fill: an account with five members, C customers, M messages in threads of 1-5 per customer, bulk-loaded.
# 2. Time the mail list (first and a deep page), its filters, the customer timeline, text searches and, as a
#    same-run baseline, the customer list: median and p95 over R requests each, with the SQL each request ran.
# Run from the project root: .venv/bin/python bench/list_bench.py [--messages M] [--customers C] [--repeat R]
# [--database postgresql://...] [--keep] [--explain]. --database (or DATABASE_URL) names a PostgreSQL server on
# this machine to work in a throwaway database on.
import argparse
import atexit
import enum
import math
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORKDIR = Path(tempfile.mkdtemp(prefix="list-bench-"))
KEEP = {"workdir": False}  # --keep sets it; atexit reads it


def _remove_workdir() -> None:
    """Remove the temp folder unless --keep asked to leave it."""
    if not KEEP["workdir"]:
        shutil.rmtree(WORKDIR, ignore_errors=True)


atexit.register(_remove_workdir)
# The portal must never see the developer's instance folder (database, keys): set before importing it.
os.environ["PORTAL_INSTANCE_PATH"] = str(WORKDIR / "instance")

import psycopg  # noqa: E402
from sqlalchemy import LargeBinary, cast, event, func, make_url, select, text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from portal.config import normalise_database_url  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.mails.search import INDEXED_BODY  # noqa: E402
from portal.mails.services import JST  # noqa: E402
from portal.models import Customer, Direction, MailCustomer, MailMessage, MailThread, Role, utcnow  # noqa: E402
from portal.models.mail import SEARCH_INDEX_NAMES  # noqa: E402
from tests.factories import PASSWORD, make_account, make_member  # noqa: E402
from bench.cpu_share import CPUS, Stopwatch  # noqa: E402
from bench.portal_app import migrated_app  # noqa: E402
from bench.sample_text import (COMPANY_STEMS, COMPANY_TRADES, GIVEN_NAMES, PARAGRAPHS, SURNAMES,  # noqa: E402
                               TOPICS)

LIST_TARGET_MS = 50.0  # p95 of the list, its filters and the timeline, from issue 13
SEARCH_TARGET_MS = 100.0  # p95 of a text search for a word no message contains, from issue 13
WARMUPS = 3
CHUNK = 20_000  # rows per bulk INSERT or COPY, one commit each
MEMBERS = 5  # the owner and four members
HTML_SHARE = 0.2
SEARCH_WORD = "特急対応"  # in about 1% of the bodies and nowhere else
SEARCH_SENTENCE = f"なお、本件は{SEARCH_WORD}でお願いできますでしょうか。"
SEARCH_SHARE = 0.01
# Searched for and found nowhere: a surname none of the generated mail uses (one of its trigrams is in no message,
# as with most names, numbers or typos that match nothing) ...
ABSENT_WORD = "長谷川"
# ... and a natural phrase that happens to be in no message although each of its trigrams is in most of them:
# the trigram index's worst case.
ABSENT_COMMON_PHRASE = "ご連絡いたしました"
COMMON_PHRASE = "お世話になっております"  # in the greeting of every generated message
SHORT_WORD = "見積"  # two characters: the index cannot find it
HISTORY_DAYS = 730
ROW = "#message-"  # every mail row (list and timeline) links to its message with this anchor
CUSTOMER_ROW = re.compile(r'href="/customers/\d+"')
LOOPBACK = {None, "", "127.0.0.1", "::1", "localhost"}  # no host: a Unix socket on this machine

# ---- the data -------------------------------------------------------------------------------------------------


def company_name(number: int) -> str:
    """One of 500 company names, the same for every customer of one mail domain."""
    stem, trade = COMPANY_STEMS[number % len(COMPANY_STEMS)], COMPANY_TRADES[number // len(COMPANY_STEMS) % 10]
    return f"株式会社{stem}{trade}" if number % 2 else f"{stem}{trade}株式会社"


@dataclass(slots=True)
class Planned:
    """One message before its body is written: what the checks and the timed filters need to know."""

    received_at: datetime
    thread_id: int
    customer: int  # index into the customer rows
    direction: Direction
    membership_id: int
    subject: str
    has_word: bool
    has_html: bool
    body_seed: int


@dataclass
class Plan:
    """The whole fill: customer and thread rows, the planned messages (oldest first), facts for the checks."""

    customers: list[dict]
    threads: list[dict]
    messages: list[Planned]
    members: list[tuple[int, str, str]]  # (membership id, user name, email)
    threads_of: list[int] = field(default_factory=list)  # per customer
    messages_of: list[int] = field(default_factory=list)  # per customer


def plan_fill(account_id: int, members: list[tuple[int, str, str]], total: int, customer_count: int,
              first_ids: dict[str, int], now: datetime, rng: random.Random) -> Plan:
    """Customers, threads of 1-5 messages per customer and the messages, spread over the last two years."""
    customers = []
    for n in range(customer_count):
        customers.append({
            "id": first_ids["customer"] + n, "account_id": account_id,
            "name": f"{SURNAMES[n % len(SURNAMES)]} {GIVEN_NAMES[n // len(SURNAMES) % len(GIVEN_NAMES)]}（{n:05d}）",
            "company": company_name(n % 500), "email": f"c{n}@client{n % 500}.example",
            "assigned_membership_id": members[n % len(members)][0],
            "created_at": now - timedelta(days=rng.uniform(HISTORY_DAYS, HISTORY_DAYS + 365)), "updated_at": now,
            "deleted_at": None})
    # Messages go to customers at random (about M/C each, some more, some fewer), then into threads of 1-5.
    per_customer = [0] * customer_count
    for _ in range(total):
        per_customer[rng.randrange(customer_count)] += 1
    threads, planned = [], []
    threads_of = [0] * customer_count
    for n, count in enumerate(per_customer):
        assignee = members[n % len(members)][0]
        while count:
            size = min(count, rng.randint(1, 5))
            count -= size
            thread_id = first_ids["thread"] + len(threads)
            subject = f"{rng.choice(TOPICS)}（{customers[n]['company']}様）"
            # Replies 30 minutes to 3 days apart; the thread ends in the past (clamping replies to "now" would
            # pile thousands of messages onto one instant, which no mailbox has).
            gaps = [timedelta(hours=rng.uniform(0.5, 72)) for _ in range(size - 1)]
            when = now - timedelta(minutes=1) - sum(gaps, timedelta()) - timedelta(days=rng.uniform(0, HISTORY_DAYS))
            for depth in range(size):
                if depth:
                    when += gaps[depth - 1]
                seen_by = assignee if rng.random() < 0.8 else rng.choice(members)[0]
                planned.append(Planned(
                    received_at=when, thread_id=thread_id, customer=n,
                    direction=Direction.RECEIVED if rng.random() < 0.6 else Direction.SENT,
                    membership_id=seen_by, subject=("Re: " * min(depth, 1)) + subject,
                    has_word=rng.random() < SEARCH_SHARE, has_html=rng.random() < HTML_SHARE,
                    body_seed=rng.getrandbits(32)))
            threads.append({"id": thread_id, "account_id": account_id, "subject_key": subject,
                            "last_message_at": when})
            threads_of[n] += 1
    # Ids in time order, as an importer that walks UIDs roughly stores them.
    planned.sort(key=lambda p: p.received_at)
    return Plan(customers, threads, planned, members, threads_of, per_customer)


def body_text(planned: Planned, customer: dict, member: tuple[int, str, str]) -> str:
    """A 1-3 KB Japanese business mail body, from the customer or to them."""
    rng = random.Random(planned.body_seed)
    if planned.direction == Direction.RECEIVED:
        opening = f"{member[1]}様\n\nいつもお世話になっております。\n{customer['company']}の{customer['name']}です。\n"
        closing = f"\n以上、よろしくお願いいたします。\n\n{customer['company']}\n{customer['name']}\n{customer['email']}\n"
    else:
        opening = f"{customer['company']}\n{customer['name']}様\n\nいつも大変お世話になっております。\n{member[1]}です。\n"
        closing = f"\n引き続きよろしくお願いいたします。\n\n--\n{member[1]}\n{member[2]}\n"
    target = rng.randint(1000, 3000)
    parts = [opening]
    size = len(opening.encode()) + len(closing.encode())
    while size < target:
        paragraph = rng.choice(PARAGRAPHS)
        parts.append(paragraph)
        size += len(paragraph.encode()) + 1
    if planned.has_word:
        parts.insert(rng.randint(1, len(parts)), SEARCH_SENTENCE)
    parts.append(closing)
    return "\n".join(parts)


def message_row(message_id: int, planned: Planned, plan: Plan, account_id: int, by_id: dict) -> dict:
    """The mail_messages row of a planned message, with its body written now."""
    customer = plan.customers[planned.customer]
    member = by_id[planned.membership_id]
    text_body = body_text(planned, customer, member)
    html_body = None
    if planned.has_html:
        paragraphs = "".join(f"<p>{line}</p>" for line in text_body.split("\n") if line)
        html_body = f'<html><body style="font-family: sans-serif">{paragraphs}</body></html>'
    received = planned.direction == Direction.RECEIVED
    return {
        "id": message_id, "account_id": account_id, "message_key": f"mid:{message_id}@bench.example",
        "message_id_header": f"{message_id}@bench.example", "in_reply_to": None, "references": "",
        "thread_id": planned.thread_id, "direction": planned.direction, "membership_id": planned.membership_id,
        "subject": planned.subject,
        "from_address": customer["email"] if received else member[2],
        "from_name": customer["name"] if received else member[1],
        "to_addresses": member[2] if received else customer["email"], "cc_addresses": "",
        "sent_at": planned.received_at - timedelta(seconds=20), "received_at": planned.received_at,
        "text_body": text_body, "html_body": html_body,
        "size_bytes": 900 + len(text_body.encode()) + len((html_body or "").encode()),
        "raw": None, "too_large": False, "has_defects": False, "defects": "", "auto_submitted": False,
        "imported_at": planned.received_at + timedelta(minutes=3), "sent_by_membership_id": None, "tracked": False}


def driver_value(value, dialect: str):
    """A row value as the driver stores it: enums by value; on SQLite, UTC text timestamps and 0/1 booleans."""
    if isinstance(value, enum.Enum):
        return value.value
    if dialect == "sqlite":
        if isinstance(value, datetime):
            # SQLAlchemy's own SQLite DATETIME format, in UTC as UTCDateTime stores it.
            return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(value, bool):
            return int(value)
    return value


class Loader:
    """Bulk-loads rows through the database driver (executemany on SQLite, COPY on PostgreSQL), CHUNK per commit.

    The ORM would spend most of a million-row fill converting parameters; the rows are the same either way.
    """

    def __init__(self):
        self.dialect = db.engine.dialect.name
        self.connection = db.engine.raw_connection()

    def __enter__(self) -> "Loader":
        if self.dialect == "sqlite":
            # A throwaway file: no fsync per chunk, and a page cache that holds the indexes being grown.
            self.connection.cursor().execute("PRAGMA synchronous = OFF")
            self.connection.cursor().execute("PRAGMA cache_size = -262144")
        return self

    def __exit__(self, *exc_info) -> None:
        if self.dialect == "sqlite":
            self.connection.cursor().execute("PRAGMA synchronous = FULL")  # the defaults the portal runs with
            self.connection.cursor().execute("PRAGMA cache_size = -2000")
        self.connection.close()

    def load(self, model, rows) -> None:
        """Insert dict rows; a column a row leaves out gets its scalar default, or NULL (a cache column, say)."""
        table_columns = list(model.__table__.columns)
        columns = [column.name for column in table_columns]
        missing = {column.name: column.default.arg if column.default is not None and column.default.is_scalar else None
                   for column in table_columns}
        names = ", ".join(f'"{name}"' for name in columns)
        cursor = self.connection.cursor()
        batch = []
        for row in rows:
            batch.append(tuple(driver_value(row[name] if name in row else missing[name], self.dialect)
                               for name in columns))
            if len(batch) == CHUNK:
                self._write(cursor, model.__tablename__, names, len(columns), batch)
                batch = []
        if batch:
            self._write(cursor, model.__tablename__, names, len(columns), batch)
        cursor.close()

    def _write(self, cursor, table_name: str, names: str, width: int, batch: list[tuple]) -> None:
        """One chunk, one commit."""
        if self.dialect == "postgresql":
            with cursor.copy(f"COPY {table_name} ({names}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table_name} ({names}) VALUES ({', '.join('?' * width)})", batch)
        self.connection.commit()


def trigram_index_definitions() -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the PostgreSQL trigram indexes, as the migration made them."""
    rows = db.session.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(:names)"),
                              {"names": sorted(SEARCH_INDEX_NAMES)}).all()
    db.session.commit()
    return [(name, definition) for name, definition in rows]


def next_id(model) -> int:
    """The first free id of a table (1 in a fresh database), so rows can be wired before they exist."""
    return (db.session.scalar(select(func.max(model.id))) or 0) + 1


@dataclass
class FillTimes:
    """Seconds spent on each part of the fill."""

    planned: float = 0.0
    loaded: float = 0.0
    indexed: float = 0.0  # PostgreSQL: building the trigram indexes after the load
    vacuumed: float = 0.0  # PostgreSQL: VACUUM (ANALYZE)


def fill(total: int, customer_count: int) -> tuple[Plan, FillTimes]:
    """Make the account and members through the services, bulk-load the rest; returns (plan, times)."""
    times = FillTimes()
    start = time.perf_counter()
    account, owner = make_account("株式会社ベンチマーク")
    memberships = [owner] + [make_member(account, Role.USER) for _ in range(MEMBERS - 1)]
    members = [(m.id, m.user.name, m.user.email) for m in memberships]
    first_ids = {"customer": next_id(Customer), "thread": next_id(MailThread), "message": next_id(MailMessage)}
    plan = plan_fill(account.id, members, total, customer_count, first_ids, utcnow(), random.Random(42))
    times.planned = time.perf_counter() - start

    postgres = db.engine.dialect.name == "postgresql"
    # PostgreSQL grows a GIN index one posting at a time, about ten times slower than it builds one: drop the
    # trigram indexes for the load and rebuild them with the migration's own statements. SQLite's FTS table is
    # filled by the migration's triggers as the rows arrive, as the importer fills it.
    trigram_indexes = trigram_index_definitions() if postgres else []
    for name, _ in trigram_indexes:
        db.session.execute(text(f"DROP INDEX {name}"))
    account_id = account.id
    # No transaction may stay open across the load: its snapshot would keep VACUUM from marking the new rows
    # all-visible, and every count would then read the table instead of an index.
    db.session.commit()
    db.session.close()
    start = time.perf_counter()
    by_id = {member[0]: member for member in members}
    first = first_ids["message"]
    with Loader() as loader:
        loader.load(Customer, plan.customers)
        loader.load(MailThread, plan.threads)
        loader.load(MailMessage, (message_row(first + n, p, plan, account_id, by_id)
                                  for n, p in enumerate(plan.messages)))
        loader.load(MailCustomer, ({"message_id": first + n, "customer_id": plan.customers[p.customer]["id"]}
                                   for n, p in enumerate(plan.messages)))
    times.loaded = time.perf_counter() - start
    if postgres:
        start = time.perf_counter()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SET maintenance_work_mem = '1GB'"))
            for _, definition in trigram_indexes:
                conn.execute(text(definition))
        times.indexed = time.perf_counter() - start
        # Autovacuum would have vacuumed and analysed a real database long before anyone pages through it; without
        # the visibility map a count(*) cannot use an index-only scan.
        start = time.perf_counter()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
        times.vacuumed = time.perf_counter() - start
    return plan, times


# ---- the database ---------------------------------------------------------------------------------------------


class ServerDatabase:
    """A throwaway database on the PostgreSQL server --database names, created here and always dropped."""

    def __init__(self, server_url: str):
        url = make_url(normalise_database_url(server_url))
        if url.host not in LOOPBACK:
            raise SystemExit(f"--database must point at this machine (127.0.0.1, ::1 or a socket), not {url.host}")
        if not url.drivername.startswith("postgresql"):
            raise SystemExit("--database must be a PostgreSQL URL; without it the benchmark uses its own SQLite")
        self.name = f"list_bench_{uuid.uuid4().hex[:12]}"
        self.admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.url = url.set(database=self.name).render_as_string(hide_password=False)
        self.created = False

    def create(self) -> None:
        """CREATE DATABASE (connected to the database --database names, which is only read)."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        """DROP DATABASE, closing any connection still open."""
        if self.created:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False


def build_app(database_url: str):
    """The portal on the throwaway database, its schema built by the real migrations, with test settings."""
    return migrated_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "WTF_CSRF_ENABLED": False,
                         "LOGIN_RATE_LIMIT": "1000 per minute", "SERVER_NAME": None})


class SqlCounter:
    """Counts the statements the engine runs and keeps those of the current request, to replay and explain."""

    def __init__(self, engine):
        self.statements = 0
        self.last: list[tuple[str, object]] = []  # (statement, parameters) since the last reset
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, parameters, context, executemany):
        """Note one statement."""
        self.statements += 1
        self.last.append((statement, parameters))

    def reset(self) -> None:
        """Start counting one request."""
        self.statements, self.last = 0, []


# ---- measurements ---------------------------------------------------------------------------------------------

@dataclass
class Page:
    """One timed page: a label, the requests to make (warm-ups first), its target, and what a real answer shows."""

    label: str
    requests: list[tuple[str, dict, str]]  # (path, query string, text the response must show)
    target_ms: float | None  # p95 target, or None for a page timed for information
    marker: str | re.Pattern | None = ROW  # what every row contains; None: the page must show no row


@dataclass
class Result:
    """Timings of one page."""

    page: Page
    times_ms: list[float]
    statements: int
    queries: list[tuple[str, object]]  # what the last timed request ran
    watch: Stopwatch
    sql: list[tuple[float, str, object]] = field(default_factory=list)  # replayed SELECTs: (ms, statement, params)

    @property
    def median(self) -> float:
        """Median in ms."""
        return statistics.median(self.times_ms)

    @property
    def p95(self) -> float:
        """95th percentile in ms (nearest rank: 29th of 30)."""
        ordered = sorted(self.times_ms)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]

    @property
    def passed(self) -> bool:
        """p95 under the page's target."""
        return self.page.target_ms is None or self.p95 < self.page.target_ms


def get_checked(client, page: Page, path: str, query: dict, expected: str):
    """GET the page and make sure it is the real thing: 200, the expected total or text, rows (or none)."""
    response = client.get(path, query_string=query)
    body = response.get_data(as_text=True)
    if response.status_code != 200:
        raise AssertionError(f"{page.label}: {path} {query} answered {response.status_code}")
    if expected not in body:
        found = re.search(r"全(\d+)件|[\d,]+件以上|検索結果 \S+件目|条件に一致するメールはありません", body)
        raise AssertionError(f"{page.label}: {path} {query} shows {found.group(0) if found else 'no total'}, "
                             f"expected {expected}")
    if page.marker is None:
        if ROW in body:
            raise AssertionError(f"{page.label}: {path} {query} lists messages, expected none")
    elif not (page.marker.search(body) if isinstance(page.marker, re.Pattern) else page.marker in body):
        raise AssertionError(f"{page.label}: {path} {query} has no row")
    return response


def measure(client, page: Page, counter: SqlCounter, marker: str | None) -> Result:
    """Warm up, then time each request; keeps the median statement count and SQL time per request."""
    for path, query, total in page.requests[:WARMUPS]:
        get_checked(client, page, path, query, total)
    times, statements = [], []
    with Stopwatch((marker,) if marker else ()) as watch:
        for path, query, total in page.requests[WARMUPS:]:
            counter.reset()
            start = time.perf_counter()
            get_checked(client, page, path, query, total)
            times.append(1000 * (time.perf_counter() - start))
            statements.append(counter.statements)
    return Result(page, times, int(statistics.median(statements)), list(counter.last), watch)


REPLAY_LIMIT_MS = 3000


def _is_setting(statement: str) -> bool:
    """The search's time limit reads and sets statement_timeout with SELECTs: setting, not reading mail."""
    return "set_config(" in statement or "current_setting(" in statement


def replay(queries: list[tuple[str, object]]) -> list[tuple[float, str, object]]:
    """Run the SELECTs of one request again, fetching every row, three times each; (median ms, statement, params)."""
    # The listener's clock stops when the driver returns from execute, before SQLite has produced most rows,
    # so the time a page spends in the database is measured here instead.
    timed = []
    connection = db.session.connection()
    if db.engine.dialect.name == "postgresql":  # a LIKE the index cannot narrow would read a million bodies
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {REPLAY_LIMIT_MS}")
    for statement, parameters in queries:
        if not statement.lstrip().upper().startswith(("SELECT", "WITH")) or _is_setting(statement):
            continue
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            try:
                # A savepoint per run: a statement the search's time limit stopped stops here too (same budget).
                with connection.begin_nested():
                    connection.exec_driver_sql(statement, parameters).fetchall()
            except OperationalError:
                runs.append(1000 * (time.perf_counter() - start))
                break
            runs.append(1000 * (time.perf_counter() - start))
        timed.append((statistics.median(runs), statement, parameters))
    db.session.rollback()
    return timed


def query_plan(statement: str, parameters) -> list[str]:
    """The plan of a statement: EXPLAIN QUERY PLAN on SQLite (as a tree), EXPLAIN ANALYZE on PostgreSQL."""
    connection = db.session.connection()
    if db.engine.dialect.name == "postgresql":
        rows = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).all()
        lines = [row[0] for row in rows]
    else:
        depth, lines = {0: -1}, []
        for node, parent, _, detail in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters):
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
    db.session.rollback()
    return lines


def print_slowest(result: Result) -> None:
    """The slowest statement of the page's last request, its parameters and its plan."""
    ms, statement, parameters = max(result.sql)
    print(f"    slowest statement ({ms:.1f} ms, parameters {parameters!r}):")
    print("      " + re.sub(r"\s+", " ", statement).strip())
    print("    plan:")
    for line in query_plan(statement, parameters):
        print("      " + line)


def shown_total(total: int, page: int, per_page: int, count_cap: int) -> str:
    """What the list's pager must say: 全N件, or 「N件以上」 where the count stops (see services.ListPage)."""
    limit = ((page - 1) * per_page + per_page) // count_cap * count_cap + count_cap
    return f"{limit:,}件以上" if total > limit else f"全{total}件"


def found(matches: int, per_page: int) -> str:
    """What the first page of a text search with that many matches shows."""
    return f"検索結果 1〜{min(matches, per_page)}件目"


NOTHING_FOUND = "条件に一致するメールはありません"


def pages(plan: Plan, total: int, repeat: int, today: date, per_page: int, count_cap: int) -> list[Page]:
    """The timed pages, each with warm-ups + repeat requests and the text every response must show."""
    count = WARMUPS + repeat
    members = [member[0] for member in plan.members]
    # Customers with about the average number of messages, a different one for each request.
    average = total / len(plan.customers)
    typical = sorted(range(len(plan.customers)), key=lambda n: (abs(plan.messages_of[n] - average), n))
    typical = [n for n in typical if plan.messages_of[n]][:count]
    year_ago = today - timedelta(days=365)
    start = datetime.combine(year_ago, datetime.min.time(), tzinfo=JST)
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=JST)

    def filtered_total(member_id: int) -> int:
        """Messages the direction, member and date filter must find."""
        return sum(1 for p in plan.messages if p.membership_id == member_id and p.direction == Direction.RECEIVED
                   and start <= p.received_at < end)

    filtered_totals = {member_id: filtered_total(member_id) for member_id in members}
    searched = sum(p.has_word for p in plan.messages)
    deep = max(1, math.ceil(total / per_page) // 2)
    customer_id = [c["id"] for c in plan.customers]
    # A customer's number, e.g. 「00042」 from 「山田 太郎（00042）」, is in the signature of their mail only.
    numbered = typical[0]
    return [
        Page("GET /customers (baseline: the customer list)",
             [("/customers", {}, f"全{len(plan.customers)}件")] * count, None, marker=CUSTOMER_ROW),
        Page("GET /mails (first page)", [("/mails", {}, shown_total(total, 1, per_page, count_cap))] * count,
             LIST_TARGET_MS),
        Page("GET /mails?direction&member&dates (a year)",
             [("/mails", {"direction": "received", "member": members[i % len(members)],
                          "date_from": year_ago.isoformat(), "date_to": today.isoformat()},
               shown_total(filtered_totals[members[i % len(members)]], 1, per_page, count_cap))
              for i in range(count)], LIST_TARGET_MS),
        Page("GET /mails?customer=<id>",
             [("/mails", {"customer": customer_id[n]}, f"全{plan.messages_of[n]}件") for n in typical],
             LIST_TARGET_MS),
        Page("GET /customers/<id> (timeline)",
             [(f"/customers/{customer_id[n]}", {}, f"全{plan.threads_of[n]}件") for n in typical], LIST_TARGET_MS),
        Page(f"GET /mails?page={deep} (deep page)",
             [("/mails", {"page": deep}, shown_total(total, deep, per_page, count_cap))] * count, None),
        # A text search shows no total (counting would read every body), only which rows of the results it shows.
        Page(f"GET /mails?q={ABSENT_WORD} (in no message)", [("/mails", {"q": ABSENT_WORD}, NOTHING_FOUND)] * count,
             SEARCH_TARGET_MS, marker=None),
        Page(f"GET /mails?q={ABSENT_COMMON_PHRASE} (in none; trigrams in most)",
             [("/mails", {"q": ABSENT_COMMON_PHRASE}, NOTHING_FOUND)] * count, None, marker=None),
        Page(f"GET /mails?q={plan.customers[numbered]['name'][-6:-1]} (a customer's number)",
             [("/mails", {"q": plan.customers[numbered]["name"][-6:-1]},
               found(plan.messages_of[numbered], per_page))] * count, None),
        Page(f"GET /mails?q={SEARCH_WORD} (in {SEARCH_SHARE:.0%} of bodies)",
             [("/mails", {"q": SEARCH_WORD}, found(searched, per_page))] * count, None),
        Page(f"GET /mails?q={COMMON_PHRASE} (in every body)",
             [("/mails", {"q": COMMON_PHRASE}, found(total, per_page))] * count, None),
        Page(f"GET /mails?q={SHORT_WORD} (2 characters: newest messages only)",
             [("/mails", {"q": SHORT_WORD}, "新しい順に")] * count, None),
    ]


def check_search_words(plan: Plan) -> None:
    """The searched words are where the pages expect them: the absent ones in no text the fill writes."""
    texts = PARAGRAPHS + TOPICS + [SEARCH_SENTENCE] + [c["name"] + c["company"] for c in plan.customers]
    for word in (ABSENT_WORD, ABSENT_COMMON_PHRASE):
        if any(word in text_ for text_ in texts):
            raise AssertionError(f"{word} is in the generated mail")
    # Each trigram of the common phrase is in the paragraphs and greetings every message is written from.
    pieces = "".join(PARAGRAPHS) + "いつもお世話になっております。以上、よろしくお願いいたします。"
    rare = [ABSENT_COMMON_PHRASE[i:i + 3] for i in range(len(ABSENT_COMMON_PHRASE) - 2)
            if ABSENT_COMMON_PHRASE[i:i + 3] not in pieces]
    if rare:
        raise AssertionError(f"trigrams of {ABSENT_COMMON_PHRASE} not in the paragraphs: {rare}")


def login(client, email: str) -> None:
    """Sign in through the real login form, as tests.conftest.AuthActions does (one account: no selection)."""
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    if response.status_code != 302 or "/login" in response.headers["Location"]:
        raise AssertionError(f"login failed: {response.status_code} {response.headers.get('Location')}")
    if "/accounts/select" in response.headers["Location"]:
        raise AssertionError("the owner should have exactly one account")


def verdict(result: Result) -> str:
    """PASS or FAIL against the page's target, or 'info' for pages timed for information."""
    if result.page.target_ms is None:
        return "info"
    return "PASS" if result.passed else "FAIL"


def machine(database: str) -> str:
    """nproc, CPU, load, Python and database versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (f"machine: nproc {CPUS} ({cpu}), load {' '.join(load)}, Python {platform.python_version()}, "
            f"{database}")


def database_version() -> str:
    """The database the portal runs on, as one phrase."""
    if db.engine.dialect.name == "postgresql":
        return "PostgreSQL " + db.session.scalar(text("SHOW server_version")).split()[0]
    return f"SQLite {sqlite3.sqlite_version}"


def database_size(database_url: str) -> str:
    """The size of the filled database."""
    if db.engine.dialect.name == "postgresql":
        size = db.session.scalar(text("SELECT pg_database_size(current_database())"))
    else:
        size = Path(make_url(database_url).database).stat().st_size
    return f"{size / 2**20:.0f} MB"


def storage() -> str:
    """The mail's size and the text search index's size beside it (customers may pay for storage)."""
    if db.engine.dialect.name == "postgresql":
        sizes = db.session.execute(text(
            "SELECT pg_table_size('mail_messages'), pg_indexes_size('mail_messages'), "
            "pg_relation_size('ix_mail_messages_subject_trgm') + pg_relation_size('ix_mail_messages_body_trgm')")).one()
        table, indexes, search = sizes[0], sizes[1] - sizes[2], sizes[2]
        where = "pg_trgm GIN indexes on subject and body"
    else:
        # dbstat, summed page by page (its aggregate mode overflows past 2 GB in SQLite 3.40).
        pages_of = dict(db.session.execute(text("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")).all())
        table = pages_of.get("mail_messages", 0)
        indexes = sum(size for name, size in pages_of.items()
                      if name.startswith(("ix_mail_messages_", "sqlite_autoindex_mail_messages_")))
        search = sum(size for name, size in pages_of.items() if name.startswith("mail_search"))
        where = "FTS5 trigram table mail_search"
    def octets(value):
        """Bytes of a text value (SQLite 3.40 has no octet_length)."""
        if db.engine.dialect.name == "postgresql":
            return func.coalesce(func.octet_length(value), 0)
        return func.coalesce(func.length(cast(value, LargeBinary)), 0)

    text_bytes = db.session.scalar(select(func.sum(octets(MailMessage.subject) + octets(INDEXED_BODY))))
    db.session.rollback()
    mb = 2**20
    return (f"storage: mail_messages {table / mb:,.0f} MB (its list indexes {indexes / mb:,.0f} MB; subjects and "
            f"searchable bodies {text_bytes / mb:,.0f} MB of text); text search index ({where}) {search / mb:,.0f} MB "
            f"= {search / table:.2f}x the mail table")


def run(app, database_url: str, marker: str | None, args) -> bool:
    """Fill, sign in, time every page and print the figures; returns True when every page meets its target."""
    with app.app_context():
        counter = SqlCounter(db.engine)
        print(machine(database_version()))
        plan, times = fill(args.messages, args.customers)
        check_search_words(plan)
        owner_email = plan.members[0][2]
        size = database_size(database_url)
        sizes = storage()
    searched = sum(p.has_word for p in plan.messages)
    print(f"data: 1 account, {MEMBERS} members, {len(plan.customers)} customers, {len(plan.threads)} threads, "
          f"{len(plan.messages)} messages over about {HISTORY_DAYS} days (60% received, {HTML_SHARE:.0%} with HTML, "
          f"1-3 KB Japanese bodies, '{SEARCH_WORD}' in {searched}); database {size}")
    print(sizes)
    rebuilt = (f", trigram indexes built after the load {times.indexed:.1f} s, VACUUM (ANALYZE) {times.vacuumed:.1f} s"
               if times.indexed else "")
    print(f"fill: {times.planned + times.loaded + times.indexed + times.vacuumed:.1f} s (account and members through "
          f"the services and planning {times.planned:.1f} s, driver bulk load in {CHUNK}-row chunks "
          f"{times.loaded:.1f} s{rebuilt})")

    client = app.test_client()
    login(client, owner_email)
    today = datetime.now(JST).date()
    print(f"\n{WARMUPS} warm-ups, then {args.repeat} timed requests per page through app.test_client(), "
          f"signed in as the owner; targets p95 < {LIST_TARGET_MS:.0f} ms (list pages), "
          f"< {SEARCH_TARGET_MS:.0f} ms (a search that finds nothing)")
    results = []
    for page in pages(plan, args.messages, args.repeat, today, app.config["PER_PAGE"],
                      app.config["MAIL_LIST_COUNT_CAP"]):
        result = measure(client, page, counter, marker)
        with app.app_context():
            result.sql = replay(result.queries)
        results.append(result)
        sql_ms = sum(ms for ms, _, _ in result.sql)
        print(f"  {page.label:<52} median {result.median:6.1f} ms ({result.median / results[0].median:4.1f}x)  "
              f"p95 {result.p95:6.1f} ms  {verdict(result):<4}  {result.statements:2d} statements, "
              f"SELECTs {sql_ms:6.1f} ms; {result.watch.note()}")
        if args.explain or not result.passed:
            with app.app_context():
                print_slowest(result)
    gated = [r for r in results if r.page.target_ms is not None]
    passed = sum(r.passed for r in gated)
    ok = passed == len(gated)
    print(f"\n{passed} of {len(gated)} pages under their target at p95: {'PASS' if ok else 'FAIL'}"
          " (a line marked 'skewed' ran while other processes took CPU: rerun on an idle machine to trust it)")
    return ok


def main() -> int:
    """Parse the arguments, build the throwaway database, run, and always clean up (unless --keep)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages in the account (default 100000)")
    parser.add_argument("--customers", type=int, default=10_000, help="customers in the account (default 10000)")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page (default 30)")
    parser.add_argument("--database", default=os.environ.get("DATABASE_URL"), metavar="postgresql://...",
                        help="a PostgreSQL server on this machine to make a throwaway database on "
                             "(default: DATABASE_URL; neither: SQLite in a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (and a server database)")
    parser.add_argument("--explain", action="store_true",
                        help="print every page's slowest statement and its plan (always done for a failing page)")
    args = parser.parse_args()
    if args.messages < 1 or args.customers < 1 or args.repeat < 1:
        parser.error("--messages, --customers and --repeat must be at least 1")
    KEEP["workdir"] = args.keep
    # Ctrl-C and a plain `kill` must both clean up: their exceptions run the finally blocks and atexit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    server = ServerDatabase(args.database) if args.database else None
    where = f"PostgreSQL database {server.name} (throwaway)" if server else "SQLite in a temp dir"
    print(f"mail list benchmark (Flask test client, {where}, {args.messages} messages, {args.customers} customers)")
    app = None
    try:
        if server:
            server.create()
        database_url = server.url if server else f"sqlite:///{WORKDIR / 'bench.db'}"
        app = build_app(database_url)
        ok = run(app, database_url, server.name if server else None, args)
    finally:
        if app is not None:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        if args.keep:
            print(f"kept: {WORKDIR}" + (f" and {server.url}" if server else ""))
        elif server:
            server.drop()
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted (temp folder removed, server database dropped)", file=sys.stderr)
        sys.exit(130)
