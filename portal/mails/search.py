"""Text search of the mail list: the words of a query, the trigram index, LIKE, and a time limit per statement.

The index (built by the text search migration) covers each message's subject and body: FTS5 with the trigram
tokenizer on SQLite, GIN trigram indexes (pg_trgm) on PostgreSQL. A query is split into words at spaces, and
every word must occur (in the subject or the body, any case). A trigram index finds only words of three
characters or more, and pg_trgm keeps only letters and digits, so a word goes to the index when it has three
letters or digits in a row; shorter words are checked with LIKE.

Measured at a million messages (bench/list_bench.py), the costs that shape `services.search_page`:
- a word with one uncommon trigram (a name, a number) is answered by the index in about a millisecond;
- the index returns matches by id, not by date: fetching a few thousand of them by id and sorting is cheap;
  tens of thousands are not, but then a page is found faster by reading the newest messages with LIKE
  (at 1% of the mail, about 2,000 bodies for a page, ~10 ms; asking FTS5 about each row is 40x slower);
- a word made only of very common trigrams (「ご連絡いたしました」 in Japanese business mail) makes the index
  check most messages: about 1 s on SQLite, which keeps positions, and half a minute on PostgreSQL, which must
  re-read every candidate body. So the index gets a time limit, and past it the search reads only the newest
  messages, as it does for short words, and says so on screen.
"""
import time
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Select, and_, column, func, literal_column, or_, select, table, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from portal.customers.services import escape_like
from portal.models import MailMessage
from portal.models.mail import SEARCH_INDEX_TABLE

MIN_WORD_RUN = 3  # trigram: a word needs three letters or digits in a row to be found in the index
MAX_WORDS = 8
PG_QUERY_CANCELED = "57014"  # SQLSTATE of a statement stopped by statement_timeout

# The body the index covers: the text part, or the HTML part of a message without one. The same SQL as the
# migration's, with the '' inline: PostgreSQL uses an expression index only for the very same expression.
INDEXED_BODY = func.coalesce(func.nullif(MailMessage.text_body, literal_column("''")), MailMessage.html_body)
_FTS = table(SEARCH_INDEX_TABLE, column("rowid"))


class SearchTimeout(Exception):
    """A search statement ran past its time limit and was stopped by the database."""


@dataclass(frozen=True)
class SearchWords:
    """A query split at spaces: the words the index can find, and the short ones it cannot."""

    indexed: tuple[str, ...]
    short: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        """Every word."""
        return self.indexed + self.short

    @property
    def windowed(self) -> bool:
        """True when only short words were given, so the search can read only the newest messages."""
        return bool(self.short) and not self.indexed


def _longest_word_run(word: str) -> int:
    """The longest run of letters and digits (what pg_trgm keeps of a word)."""
    longest = run = 0
    for character in word:
        run = run + 1 if character.isalnum() else 0
        longest = max(longest, run)
    return longest


def split_words(query: str) -> SearchWords:
    """Split at any whitespace (the full-width space too), drop repeats, keep at most MAX_WORDS words."""
    words = list(dict.fromkeys(query.split()))[:MAX_WORDS]
    indexed = tuple(w for w in words if _longest_word_run(w) >= MIN_WORD_RUN)
    return SearchWords(indexed, tuple(w for w in words if w not in indexed))


def without_index(column_):
    """`+column`: the same value, but SQLite will not pick an index on the column for this comparison."""
    return UnaryExpression(column_, operator=custom_op("+"), type_=column_.type)


def _contains(word: str, dialect: str):
    """The subject or the body contains the word, in any case."""
    pattern = "%" + escape_like(word) + "%"
    if dialect == "postgresql":
        # Backslash is PostgreSQL's default LIKE escape; an ESCAPE clause would hide the pattern from pg_trgm.
        if word.lower() == word.upper():
            # No letter with a case (Japanese, digits): LIKE finds the same rows without lower-casing every
            # body it reads, about 2.5 times faster.
            return or_(MailMessage.subject.like(pattern), INDEXED_BODY.like(pattern))
        return or_(MailMessage.subject.ilike(pattern), INDEXED_BODY.ilike(pattern))
    # SQLite's LIKE already ignores ASCII case (ilike would lower-case every body it reads first).
    return or_(MailMessage.subject.like(pattern, escape="\\"), INDEXED_BODY.like(pattern, escape="\\"))


def containing(session: Session, stmt: Select, words: tuple[str, ...]) -> Select:
    """Keep the statement's messages that contain every word (LIKE reads each candidate's subject and body)."""
    dialect = session.get_bind().dialect.name
    return stmt.where(and_(*(_contains(word, dialect) for word in words))) if words else stmt


def _fts_query(words: tuple[str, ...]) -> str:
    """An FTS5 query: every word as a quoted phrase (its trigrams in a row), all of them required."""
    return " AND ".join('"' + word.replace('"', '""') + '"' for word in words)


def index_matches(session: Session, words: tuple[str, ...], limit: int) -> list[int]:
    """Ids of messages (of every account) containing all the words, from the index; at most limit of them."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        found = select(MailMessage.id).where(*(_contains(word, dialect) for word in words))
    else:
        found = select(_FTS.c.rowid).where(literal_column(SEARCH_INDEX_TABLE).op("MATCH")(_fts_query(words)))
    return list(session.scalars(found.limit(limit)))


@contextmanager
def time_limit(session: Session, milliseconds: int):
    """Have the database stop the statements run inside after `milliseconds`; raises SearchTimeout then."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # A savepoint keeps the request's transaction usable after a cancel; the setting is restored either way.
        previous = session.scalar(text("SELECT current_setting('statement_timeout')"))
        try:
            with session.begin_nested():
                # Through the session, so that its SAVEPOINT goes out before the setting changes.
                session.execute(text("SELECT set_config('statement_timeout', :limit, true)"),
                                {"limit": str(int(milliseconds))})
                yield
                session.execute(text("SELECT set_config('statement_timeout', :limit, true)"), {"limit": previous})
        except OperationalError as error:
            if getattr(error.orig, "sqlstate", None) == PG_QUERY_CANCELED:
                raise SearchTimeout from error
            raise
        return
    # SQLite: the progress handler runs every 1,000 virtual machine steps; a true result interrupts the statement.
    raw = connection.connection.dbapi_connection
    deadline = time.monotonic() + milliseconds / 1000
    raw.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
    try:
        yield
    except OperationalError as error:
        if "interrupted" in str(error.orig):
            raise SearchTimeout from error
        raise
    finally:
        raw.set_progress_handler(None, 1000)
