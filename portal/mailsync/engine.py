"""One import pass over one mailbox link: fetch what is new, apply the rules, store every message exactly once."""
import functools
import hashlib
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Callable, Protocol

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, load_only, selectinload

from portal.mailsync.client import FetchedEnvelope, FolderInfo
from portal.mailsync.connection import MailboxError, server_error
from portal.mailsync.headers import decode_header_value, normalise_subject
from portal.mailsync.parse import ParsedMessage, parse_message
from portal.mailsync.rules import (AccountSnapshot, CustomerRef, Decision, Envelope, Exclusion, decide,
                                   whole_seconds)
from portal.models import (Customer, Direction, FolderRole, ImportLogEntry, LinkState, MailAttachment, MailboxFolder,
                           MailboxLink, MailCustomer, MailMessage, MailSource, MailThread, MailTombstone, Membership,
                           MembershipState, User)
from portal.scoping import for_account

THREAD_WINDOW = timedelta(days=30)

# Called with each batch's newly stored messages inside the batch's transaction, before its commit, so what a
# feature does about new mail (stop an automation on a customer's reply) commits or rolls back with the import.
AfterImport = Callable[[Session, list[MailMessage], datetime], object]


def nothing_after_import(session: Session, messages: list[MailMessage], now: datetime) -> None:
    """The default hook: the engine alone only imports."""


# Asked before every commit of a pass: False once the pass's lease went to another pass (the heartbeat lost it).
LeaseHeld = Callable[[], bool]


def always_held() -> bool:
    """A pass run without a lease (tests, a single caller) never loses one."""
    return True


class LeaseLost(Exception):
    """Another pass took this link's lease: this one stops without committing anything more."""


class MailboxClient(Protocol):
    """What the engine needs from a mailbox (ImapMailboxClient in production)."""

    def examine(self, folder: str) -> FolderInfo: ...
    def fetch_envelopes(self, first_uid: int, last_uid: int) -> list[FetchedEnvelope]: ...
    def fetch_raw(self, uids: list[int]) -> dict[int, bytes]: ...
    def uids_since(self, day) -> list[int]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class EngineConfig:
    """Tunables: size cap, batch size, backoff, import log length, and the length of a pass's lease."""

    size_cap: int = 25 * 1024 * 1024
    batch_size: int = 200
    # Full fetches of one transaction stay within this many bytes (by RFC822.SIZE): a pass's memory is bounded by it
    # and the size cap, not by how big the batch's messages are.
    batch_bytes: int = 32 * 1024 * 1024
    backoff_base_seconds: int = 60
    backoff_max_seconds: int = 3600
    import_log_keep: int = 500
    # A running pass renews its lease every third of this; a dead holder's lease lapses after it.
    lease_seconds: int = 60


@dataclass
class PassResult:
    """What one pass did for one link."""

    link_id: int
    imported: int = 0  # too-large messages (stored as headers only) included
    too_large: int = 0  # of the imported, how many were over the size cap
    excluded: int = 0  # fetched but kept out by a rule (too-large mail is imported, not excluded)
    state: LinkState = LinkState.ACTIVE
    error: str | None = None
    skipped: bool = False


@dataclass
class _Batch:
    """Decisions for one batch of envelopes."""

    fetch: dict[int, Decision] = field(default_factory=dict)
    too_large: dict[int, Decision] = field(default_factory=dict)
    excluded: dict[int, Exclusion] = field(default_factory=dict)
    headers: dict[int, dict[str, str]] = field(default_factory=dict)  # read once, for the rules and the log

    def only(self, uids: set[int]) -> "_Batch":
        """The decisions for some of the UIDs."""
        return _Batch({u: d for u, d in self.fetch.items() if u in uids},
                      {u: d for u, d in self.too_large.items() if u in uids},
                      {u: e for u, e in self.excluded.items() if u in uids},
                      {u: h for u, h in self.headers.items() if u in uids})


def account_snapshot(session: Session, account_id: int) -> AccountSnapshot:
    """Live customers by address and every member address (sign-in and linked mailbox) of the account."""
    customers = {c.email: CustomerRef(c.id, c.email, c.created_at) for c in session.scalars(
        for_account(select(Customer), account_id).where(Customer.deleted_at.is_(None)))}
    member_emails = set(session.scalars(
        for_account(select(User.email).join(Membership, Membership.user_id == User.id), account_id, Membership)
        .where(Membership.state != MembershipState.DELETED)))
    member_emails |= set(session.scalars(for_account(select(MailboxLink.email), account_id)
                                         .where(MailboxLink.state != LinkState.UNLINKED)))
    return AccountSnapshot(customers, frozenset(member_emails))


_LINE_ENDS = re.compile(rb"(\r\n|\r|\n)")
_FIELD_NAME = re.compile(rb"[\041-\071\073-\176]*:")  # the stdlib feedparser's test for a header line


def _raw_headers(fetched: FetchedEnvelope) -> dict[str, str]:
    """The prefetched header fields as raw strings, repeated fields joined (8-bit text left for our decoder).

    Reads the block as the stdlib's compat32 header parser does (folded lines keep their line ends, a line that is
    no header ends the block), without building a Message: it runs for every fetched UID.
    """
    fields: list[tuple[str, bytearray]] = []
    pieces = _LINE_ENDS.split(fetched.headers)  # line, its ending, line, its ending, ..., last line
    lines = list(zip(pieces[::2], pieces[1::2] + [b""]))
    if lines and lines[0][0].startswith(b"From "):  # an mbox separator, not a header
        lines = lines[1:]
    ending = b""
    for line, next_ending in lines:
        if line[:1] in (b" ", b"\t"):
            if fields:  # a continuation before any field is dropped, as the stdlib does
                fields[-1][1].extend(ending + line)
        elif _FIELD_NAME.match(line):
            name, _, value = line.partition(b":")
            fields.append((name.decode("ascii", "surrogateescape").lower(), bytearray(value.lstrip(b" \t"))))
        else:
            break  # the blank line, or text that is no header: the block ends here
        ending = next_ending
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name, []).append(value.decode("ascii", "surrogateescape"))
    return {name: ", ".join(parts) for name, parts in values.items()}


def _envelope(fetched: FetchedEnvelope, headers: dict[str, str]) -> Envelope:
    """The rule headers (addresses are compared after parsing, display names ignored)."""
    return Envelope(uid=fetched.uid, internal_date=fetched.internal_date, from_=headers.get("from", ""),
                    to=headers.get("to", ""), cc=headers.get("cc", ""), bcc=headers.get("bcc", ""))


def _decide_batch(envelopes: list[FetchedEnvelope], snapshot: AccountSnapshot, boundary: int,
                  linked_at: datetime | None, config: EngineConfig) -> _Batch:
    """Apply the rules to each envelope; after a UIDVALIDITY reset the link time is checked by date."""
    batch = _Batch()
    for fetched in envelopes:
        headers = batch.headers[fetched.uid] = _raw_headers(fetched)
        if linked_at is not None and fetched.internal_date < whole_seconds(linked_at):
            batch.excluded[fetched.uid] = Exclusion.BEFORE_LINK
            continue
        decision = decide(_envelope(fetched, headers), snapshot, boundary)
        if not decision.imported:
            batch.excluded[fetched.uid] = decision.exclusion
        elif fetched.size > config.size_cap:
            batch.too_large[fetched.uid] = decision
        else:
            batch.fetch[fetched.uid] = decision
    return batch


def _hash_key(raw: bytes) -> str:
    """A content key for mail without a usable Message-ID: the stable headers and the body."""
    header_end = raw.find(b"\r\n\r\n")
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:header_end if header_end >= 0 else len(raw)])
    stable = "\n".join(f"{name}:{headers.get(name, '')}" for name in ("From", "To", "Date", "Subject"))
    body = raw[header_end:] if header_end >= 0 else b""
    return "sha256:" + hashlib.sha256(stable.encode("utf-8", "replace") + b"\0" + body).hexdigest()


def _same_message(existing: "_StoredMessage | _NewMessage", parsed: ParsedMessage) -> bool:
    """A reused Message-ID on different mail must not merge two messages."""
    sender = parsed.from_[0].email if parsed.from_ else ""
    return existing.from_address == sender and existing.subject == parsed.subject[:10000]


@dataclass(frozen=True)
class _StoredMessage:
    """What the writer needs of a message stored before this batch (never its bodies)."""

    id: int
    from_address: str
    subject: str


@dataclass
class _Thread:
    """A thread the batch adds messages to: stored before it, or new (inserted first, the messages need its id)."""

    subject_key: str
    last_message_at: datetime
    id: int | None = None  # None until a new thread is inserted
    stored_last_message_at: datetime | None = None  # as read, for a stored thread: moved forward at write


@dataclass
class _NewMessage:
    """A message new in this batch: its row and attachments, inserted when the batch is written."""

    row: dict
    thread: _Thread
    attachments: list[dict]
    customer_ids: set[int] = field(default_factory=set)
    id: int | None = None

    @property
    def from_address(self) -> str:
        return self.row["from_address"]

    @property
    def subject(self) -> str:
        return self.row["subject"]


# What the after-import hook reads of the new messages (stop_on_customer_reply); other columns load on first use.
_AFTER_IMPORT_COLUMNS = (MailMessage.account_id, MailMessage.direction, MailMessage.from_address,
                         MailMessage.subject, MailMessage.received_at, MailMessage.auto_submitted)


class _BatchWriter:
    """Stores one batch's messages with a handful of queries: keys, sightings and threads are looked up per batch.

    New rows are collected in memory as plain values and written by `write` with a few multi-row statements
    (threads, messages, sightings, customer links, attachments, stored threads' times): the ORM's unit of work
    would insert them one by one on SQLite and spend more on its bookkeeping than the database spends on the rows.
    """

    def __init__(self, session: Session, link: MailboxLink, folder: MailboxFolder, raws: dict[int, bytes],
                 customer_ids: set[int], earliest: datetime):
        self.session, self.link, self.folder = session, link, folder
        self.customer_ids = customer_ids  # every customer the batch's decisions matched
        self.earliest = earliest  # the batch's first arrival time: older threads are out of every window
        self.parsed = {uid: parse_message(raw) for uid, raw in raws.items()}
        keys = {"mid:" + p.message_id[:240] for p in self.parsed.values() if p.message_id}
        self.by_key: dict[str, _StoredMessage | _NewMessage | None] = {
            key: _StoredMessage(id, from_address, subject) for key, id, from_address, subject in session.execute(
                self._stored_messages().where(MailMessage.message_key.in_(keys)))} if keys else {}
        # Read after the messages: a deletion commits its tombstone with the message's removal, so a message
        # missing above has its tombstone visible here (one found above and deleted since fails the commit).
        self.tombstoned = set(session.scalars(for_account(select(MailTombstone.message_key), link.account_id)
                                              .where(MailTombstone.message_key.in_(keys)))) if keys else set()
        self.deleted: list[int] = []  # UIDs of mail deleted in the portal: never stored again
        self.seen = set(session.scalars(select(MailSource.uid).where(
            MailSource.link_id == link.id, MailSource.folder_role == folder.role,
            MailSource.uidvalidity == folder.uidvalidity, MailSource.uid.in_(list(raws)))))
        self.threads_by_header: dict[str, _Thread] = {}
        self.threads_by_subject: dict[tuple[str, int], _Thread] = {}
        self.new_threads: list[_Thread] = []
        self.new_messages: list[_NewMessage] = []
        self.sightings: list[tuple[_StoredMessage | _NewMessage, int]] = []  # (message, UID)
        self.customer_links: list[tuple[_StoredMessage | _NewMessage, int]] = []  # (message, customer id)
        self._stored_customers: dict[int, set[int]] = {}  # customers already linked to stored messages, by id
        self._stored_threads: dict[int, _Thread] = {}
        self._stored_threads_by_header = self._stored_threads_by_header_of(self.parsed.values())
        self._stored_threads_by_subject: dict[tuple[str, int], list[tuple[datetime, int]]] | None = None

    def _stored_messages(self):
        """The columns of stored messages the writer compares and links to, in the link's account."""
        return for_account(select(MailMessage.message_key, MailMessage.id, MailMessage.from_address,
                                  MailMessage.subject), self.link.account_id)

    def _stored_thread(self, thread_id: int, subject_key: str, last_message_at: datetime) -> None:
        """Hold a stored thread read by a query; one read before keeps its (maybe already moved) time."""
        self._stored_threads.setdefault(thread_id, _Thread(subject_key, last_message_at, thread_id, last_message_at))

    def _stored_threads_by_header_of(self, parsed_messages) -> dict[str, int]:
        """The threads of stored messages that the batch's References/In-Reply-To name, in one query."""
        referenced = {i[:998] for p in parsed_messages for i in [p.in_reply_to, *p.references] if i}
        if not referenced:
            return {}
        rows = self.session.execute(
            for_account(select(MailMessage.message_id_header, MailThread.id, MailThread.subject_key,
                               MailThread.last_message_at).join(MailThread, MailThread.id == MailMessage.thread_id),
                        self.link.account_id)
            .where(MailMessage.message_id_header.in_(referenced))
            .order_by(MailMessage.id))
        found: dict[str, int] = {}
        for message_id, thread_id, subject_key, last_message_at in rows:
            found.setdefault(message_id, thread_id)
            self._stored_thread(thread_id, subject_key, last_message_at)
        return found

    def _stored_thread_by_subject(self, subject_key: str, customer_ids: tuple[int, ...],
                                  when: datetime) -> int | None:
        """A stored thread with this subject and one of these customers, active within the window before `when`.

        The candidates of the whole batch (its subjects and customers) come in one query on first use.
        """
        if self._stored_threads_by_subject is None:
            self._stored_threads_by_subject = {}
            subjects = {normalise_subject(p.subject)[:300] for p in self.parsed.values()} - {""}
            if subjects and self.customer_ids:
                rows = self.session.execute(
                    for_account(select(MailThread.subject_key, MailCustomer.customer_id, MailThread.last_message_at,
                                       MailThread.id)
                                .join(MailMessage, MailMessage.thread_id == MailThread.id)
                                .join(MailCustomer, MailCustomer.message_id == MailMessage.id), self.link.account_id)
                    .where(MailThread.subject_key.in_(subjects), MailCustomer.customer_id.in_(self.customer_ids))
                    .where(MailThread.last_message_at >= self.earliest - THREAD_WINDOW).distinct()).all()
                for key, customer_id, last_message_at, thread_id in rows:
                    self._stored_threads_by_subject.setdefault((key, customer_id), []).append(
                        (last_message_at, thread_id))
                    self._stored_thread(thread_id, key, last_message_at)
        for customer_id in customer_ids:
            for last_message_at, thread_id in sorted(self._stored_threads_by_subject.get((subject_key, customer_id),
                                                                                         ())):
                if last_message_at >= when - THREAD_WINDOW:
                    return thread_id
        return None

    def _key(self, parsed: ParsedMessage, raw: bytes) -> tuple[str, _StoredMessage | _NewMessage | None]:
        """The message's key in the account and the message with that key (stored or new in this batch), if any."""
        if parsed.message_id:
            key = "mid:" + parsed.message_id[:240]
            existing = self.by_key.get(key)
            if existing is None or _same_message(existing, parsed):
                return key, existing
        key = _hash_key(raw)
        if key not in self.by_key:
            stored = self.session.execute(self._stored_messages().where(MailMessage.message_key == key)).first()
            self.by_key[key] = _StoredMessage(*stored[1:]) if stored else None
            if self.session.scalar(for_account(select(MailTombstone.id), self.link.account_id)
                                   .where(MailTombstone.message_key == key)) is not None:
                self.tombstoned.add(key)
        return key, self.by_key[key]

    def _thread(self, parsed: ParsedMessage, customer_ids: tuple[int, ...], when: datetime) -> _Thread:
        """References/In-Reply-To first, then the normalised subject with the same customer within a window."""
        referenced = [i[:998] for i in [parsed.in_reply_to, *parsed.references] if i]
        for message_id in referenced:
            if message_id in self.threads_by_header:
                return self.threads_by_header[message_id]
        for message_id in referenced:
            if message_id in self._stored_threads_by_header:
                return self._stored_threads[self._stored_threads_by_header[message_id]]
        subject_key = normalise_subject(parsed.subject)[:300]
        for customer_id in customer_ids if subject_key else ():
            if (subject_key, customer_id) in self.threads_by_subject:
                return self.threads_by_subject[(subject_key, customer_id)]
        if subject_key and customer_ids:
            thread_id = self._stored_thread_by_subject(subject_key, customer_ids, when)
            if thread_id is not None:
                return self._stored_threads[thread_id]
        thread = _Thread(subject_key, when)
        self.new_threads.append(thread)
        return thread

    def _linked_customers(self, message: _StoredMessage | _NewMessage) -> set[int]:
        """The customers the message is linked to so far; a stored message's are read with all others found."""
        if isinstance(message, _NewMessage):
            return message.customer_ids
        if message.id not in self._stored_customers:
            ids = [m.id for m in self.by_key.values()
                   if isinstance(m, _StoredMessage) and m.id not in self._stored_customers]
            self._stored_customers.update((id, set()) for id in ids)
            for message_id, customer_id in self.session.execute(
                    select(MailCustomer.message_id, MailCustomer.customer_id).where(MailCustomer.message_id.in_(ids))):
                self._stored_customers[message_id].add(customer_id)
        return self._stored_customers[message.id]

    def store(self, uid: int, raw: bytes, decision: Decision, internal_date: datetime, too_large: bool) -> bool:
        """Store (or find) the message, record this sighting and its customers; True when newly stored."""
        parsed = self.parsed.get(uid) or parse_message(raw)
        key, message = self._key(parsed, raw)
        if key in self.tombstoned:
            self.deleted.append(uid)
            return False
        created = message is None
        if created:
            thread = self._thread(parsed, decision.customer_ids, internal_date)
            thread.last_message_at = max(thread.last_message_at, internal_date)
            message = _NewMessage(_message_row(self.link, self.folder, key, parsed, raw, internal_date, too_large),
                                  thread, _attachment_rows(parsed))
            self.new_messages.append(message)
            self.by_key[key] = message
            if parsed.message_id:
                self.threads_by_header[parsed.message_id[:998]] = thread
            for customer_id in decision.customer_ids:
                self.threads_by_subject[(thread.subject_key, customer_id)] = thread
        linked = self._linked_customers(message)
        for customer_id in decision.customer_ids:
            if customer_id not in linked:
                linked.add(customer_id)
                self.customer_links.append((message, customer_id))
        if uid not in self.seen:
            self.seen.add(uid)
            self.sightings.append((message, uid))
        return created

    def write(self) -> list[MailMessage]:
        """Insert the batch's new rows; returns the new messages as the session loads them (for the hook)."""
        self._insert_threads()
        self._move_stored_threads()
        self._insert_messages()
        _insert_rows(self.session, MailSource, [
            dict(message_id=message.id, link_id=self.link.id, folder_role=self.folder.role,
                 uidvalidity=self.folder.uidvalidity, uid=uid) for message, uid in self.sightings])
        _insert_rows(self.session, MailCustomer, [dict(message_id=message.id, customer_id=customer_id)
                                                  for message, customer_id in self.customer_links])
        _insert_rows(self.session, MailAttachment, [{**attachment, "message_id": message.id}
                                                    for message in self.new_messages
                                                    for attachment in message.attachments])
        return self._created()

    def _insert_threads(self) -> None:
        """Insert the new threads; their ids come back in order (one statement on PostgreSQL, one a row on
        SQLite, where the rows are small)."""
        if self.new_threads:
            rows = [dict(account_id=self.link.account_id, subject_key=t.subject_key,
                         last_message_at=t.last_message_at) for t in self.new_threads]
            ids = self.session.scalars(insert(MailThread).returning(MailThread.id, sort_by_parameter_order=True),
                                       rows)
            for thread, id in zip(self.new_threads, ids, strict=True):
                thread.id = id

    def _move_stored_threads(self) -> None:
        """Move stored threads' times to their newest new message, never backwards (another pass may have moved
        one further meanwhile)."""
        moved = [dict(thread_id=t.id, moved_to=t.last_message_at) for t in self._stored_threads.values()
                 if t.last_message_at > t.stored_last_message_at]
        if moved:
            threads = MailThread.__table__
            self.session.execute(update(threads).where(threads.c.id == bindparam("thread_id"),
                                                       threads.c.last_message_at < bindparam("moved_to"))
                                 .values(last_message_at=bindparam("moved_to")), moved)

    def _insert_messages(self) -> None:
        """Insert the new messages and learn their ids.

        No RETURNING: SQLite would insert one row per statement to keep the ids in order. The key is unique in the
        account, so one SELECT by key gives every new message its id.
        """
        if self.new_messages:
            _insert_rows(self.session, MailMessage, [{**m.row, "thread_id": m.thread.id} for m in self.new_messages])
            keys = [m.row["message_key"] for m in self.new_messages]
            ids = dict(self.session.execute(for_account(select(MailMessage.message_key, MailMessage.id),
                                                        self.link.account_id)
                                            .where(MailMessage.message_key.in_(keys))).all())
            for message in self.new_messages:
                message.id = ids[message.row["message_key"]]

    def _created(self) -> list[MailMessage]:
        """The new messages as the session loads them: what the after-import hook reads, customer links included."""
        if not self.new_messages:
            return []
        return list(self.session.scalars(
            select(MailMessage).where(MailMessage.id.in_([m.id for m in self.new_messages]))
            .options(load_only(*_AFTER_IMPORT_COLUMNS), selectinload(MailMessage.customer_links))
            .order_by(MailMessage.id)))


def _insert_rows(session: Session, model, rows: list[dict]) -> None:
    """One executemany INSERT into the model's table of rows that all have the same keys, nothing returned.

    Core, not the ORM's bulk INSERT: that one looks at every row's values again and splits the rows into one
    statement per combination of NULL columns.
    """
    if rows:
        session.execute(insert(model.__table__), rows)


def _message_row(link: MailboxLink, folder: MailboxFolder, key: str, parsed: ParsedMessage, raw: bytes,
                 internal_date: datetime, too_large: bool) -> dict:
    """The columns of a new stored message (its thread is added when the batch is written)."""
    return dict(
        account_id=link.account_id, message_key=key, message_id_header=_cut(parsed.message_id, 998),
        in_reply_to=_cut(parsed.in_reply_to, 998), references=" ".join(parsed.references),
        direction=Direction.SENT if folder.role == FolderRole.SENT else Direction.RECEIVED,
        membership_id=link.membership_id, subject=parsed.subject,
        from_address=_cut(parsed.from_[0].email, 254) if parsed.from_ else "",
        from_name=parsed.from_[0].name if parsed.from_ else "", to_addresses=_addresses_text(parsed.to),
        cc_addresses=_addresses_text(parsed.cc), sent_at=parsed.date, received_at=internal_date,
        text_body=parsed.text, html_body=parsed.html, size_bytes=len(raw), raw=raw, too_large=too_large,
        has_defects=bool(parsed.defects), defects=",".join(parsed.defects), auto_submitted=parsed.auto_submitted)


def _attachment_rows(parsed: ParsedMessage) -> list[dict]:
    """The columns of a new message's attachments (its id is added when the batch is written)."""
    return [dict(filename=a.filename, content_type=_cut(a.content_type, 255), size_bytes=a.size,
                 content_id=_cut(a.content_id, 998), inline=a.inline, content=a.content)
            for a in parsed.attachments]


def _cut(value: str | None, limit: int) -> str | None:
    """Fit a header value into its column: one absurd header must not fail the whole batch."""
    return value[:limit] if value else value


def _addresses_text(addresses) -> str:
    """Addresses as one display string ("name <email>, ...")."""
    return ", ".join(f"{a.name} <{a.email}>" if a.name else a.email for a in addresses)


def _decoded_for_log(value: str) -> str:
    """A header decoded for the import log; senders and recipients repeat from one excluded message to the next."""
    return _decoded_short(value) if len(value) <= 400 else decode_header_value(value)


@functools.lru_cache(maxsize=4096)  # short values only: at most a few MB
def _decoded_short(value: str) -> str:
    return decode_header_value(value)


def _log_exclusions(session: Session, link: MailboxLink, folder: MailboxFolder, batch: _Batch,
                    envelopes: dict[int, FetchedEnvelope], deleted: list[int], keep: int) -> None:
    """Remember why each fetched message stayed out (too large, or deleted in the portal before).

    One multi-row INSERT per batch, and only the batch's newest `keep` rows: older ones would be pruned anyway.
    """
    reasons = dict(batch.excluded)
    reasons.update({uid: Exclusion.TOO_LARGE for uid in batch.too_large})
    reasons.update({uid: Exclusion.DELETED for uid in deleted})
    rows = []
    for uid in sorted(reasons)[-keep:] if keep > 0 else ():
        headers = batch.headers[uid]
        rows.append(dict(link_id=link.id, folder_role=folder.role, uid=uid, reason=reasons[uid].value,
                         subject=_decoded_for_log(headers.get("subject", ""))[:500],
                         from_address=_decoded_for_log(headers.get("from", ""))[:500],
                         to_addresses=_decoded_for_log(headers.get("to", ""))[:1000],
                         received_at=envelopes[uid].internal_date))
    if rows:
        session.execute(insert(ImportLogEntry), rows)


def _apply_batch(session: Session, link: MailboxLink, folder: MailboxFolder, client: MailboxClient,
                 envelopes: list[FetchedEnvelope], batch: _Batch, config: EngineConfig, now: datetime,
                 after_import: AfterImport) -> tuple[int, int]:
    """Fetch the chosen bodies, store them and the log; the caller commits with the checkpoint.

    Returns how many messages were newly stored and how many of those were too large.
    """
    by_uid = {envelope.uid: envelope for envelope in envelopes}
    bodies = client.fetch_raw(sorted(batch.fetch))  # a message expunged in between is simply gone
    raws = {**bodies, **{uid: by_uid[uid].headers for uid in batch.too_large}}
    imported = 0
    customer_ids = {c for d in [*batch.fetch.values(), *batch.too_large.values()] for c in d.customer_ids}
    earliest = min((by_uid[uid].internal_date for uid in raws), default=now)
    writer = _BatchWriter(session, link, folder, raws, customer_ids, earliest)
    for uid, decision in batch.fetch.items():
        if uid in bodies:
            imported += writer.store(uid, bodies[uid], decision, by_uid[uid].internal_date, False)
    too_large = 0
    for uid, decision in batch.too_large.items():
        too_large += writer.store(uid, raws[uid], decision, by_uid[uid].internal_date, True)
    _log_exclusions(session, link, folder, batch, by_uid, writer.deleted, config.import_log_keep)
    created = writer.write()
    after_import(session, created, now)  # same transaction as the messages
    return imported + too_large, too_large


def _sync_uids(session: Session, link: MailboxLink, folder: MailboxFolder, client: MailboxClient,
               snapshot: AccountSnapshot, ranges: list[tuple[int, int]], boundary: int,
               linked_at: datetime | None, config: EngineConfig, result: PassResult, now: datetime,
               after_import: AfterImport, lease_held: LeaseHeld, wanted: set[int] | None = None) -> None:
    """Process UID ranges batch by batch; each batch and its checkpoint commit together."""
    for first, last in ranges:
        _ensure_held(session, lease_held)
        envelopes = [e for e in client.fetch_envelopes(first, last) if wanted is None or e.uid in wanted]
        decided = _decide_batch(envelopes, snapshot, boundary, linked_at, config)
        groups = _byte_groups(envelopes, decided, config.batch_bytes)
        for number, group in enumerate(groups, 1):
            batch = decided.only({envelope.uid for envelope in group})
            # Every UID up to the group's last was decided (absent ones were expunged); the last group ends the range.
            checkpoint = last if number == len(groups) else group[-1].uid
            for attempt in (1, 2):
                try:
                    imported, too_large = _apply_batch(session, link, folder, client, group, batch, config, now,
                                                       after_import)
                    folder.last_uid = max(folder.last_uid, checkpoint)
                    _ensure_held(session, lease_held)
                    session.commit()
                    result.imported, result.too_large = result.imported + imported, result.too_large + too_large
                    break
                except IntegrityError:
                    # Another link of the account stored the same message at the same moment: retry finds it.
                    session.rollback()
                    if attempt == 2:
                        raise
            result.excluded += len(batch.excluded)  # too-large mail is imported (headers only), counted there once


def _byte_groups(envelopes: list[FetchedEnvelope], batch: _Batch, budget: int) -> list[list[FetchedEnvelope]]:
    """Split a range's envelopes (in UID order) so that each group's full fetches stay within `budget` bytes.

    Bodies, their parses and the stored rows of one group are what a pass holds in memory at once; a message bigger
    than the budget (at most the size cap) goes alone. A range with nothing to fetch stays one group, maybe empty.
    """
    groups: list[list[FetchedEnvelope]] = [[]]
    size = 0
    for envelope in envelopes:
        cost = envelope.size if envelope.uid in batch.fetch else 0
        if groups[-1] and size + cost > budget:
            groups.append([])
            size = 0
        groups[-1].append(envelope)
        size += cost
    return groups


def _ensure_held(session: Session, lease_held: LeaseHeld) -> None:
    """Stop the pass (nothing more committed) once its lease belongs to another pass."""
    if not lease_held():
        session.rollback()
        raise LeaseLost()


def _batches(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """Split first..last into bounded UID ranges."""
    return [(start, min(start + size - 1, last)) for start in range(first, last + 1, size)]


def _confirmed_uidvalidity(client: MailboxClient, folder: MailboxFolder, seen: FolderInfo) -> FolderInfo:
    """Re-open the folder before trusting a new UIDVALIDITY (flaky values are seen in the wild; Nylas, mbsync)."""
    again = client.examine(folder.name)
    if again.uidvalidity in (seen.uidvalidity, folder.uidvalidity):
        return again  # confirmed, or the old value back: a one-off glitch
    raise MailboxError("server_error", "メールサーバーがフォルダーの識別番号（UIDVALIDITY）を安定して返しません。"
                                       "自動的に再試行します。")


def _start_rebaseline(session: Session, link: MailboxLink, folder: MailboxFolder, info: FolderInfo,
                      lease_held: LeaseHeld) -> None:
    """The server renumbered the folder: adopt the new numbering and mark the rescan pending in one commit.

    The reset alone (boundary 1, last UID 0) would let a pass that dies now import everything on the next pass;
    committed together with `rescan_since`, every later pass keeps the link-time rule until the rescan is done.
    """
    folder.uidvalidity, folder.boundary_uidnext, folder.last_uid = info.uidvalidity, 1, 0
    folder.rescan_since = folder.rescan_since or link.linked_at
    _ensure_held(session, lease_held)
    session.commit()


def _rescan(session: Session, link: MailboxLink, folder: MailboxFolder, client: MailboxClient, info: FolderInfo,
            snapshot: AccountSnapshot, config: EngineConfig, result: PassResult, now: datetime,
            after_import: AfterImport, lease_held: LeaseHeld) -> None:
    """Run or resume a re-baseline: every message since the rescan's date, by INTERNALDATE, past the checkpoint.

    Each batch commits with its checkpoint (last_uid), so an interrupted rescan resumes where it stopped under the
    same rule; message keys keep mail stored before the renumbering from coming in twice.
    """
    since = folder.rescan_since
    # SINCE is a date in the server's zone: start a day early, the exact time is checked per message.
    uids = [uid for uid in client.uids_since(since.date() - timedelta(days=1)) if uid > folder.last_uid]
    chunks = [uids[i:i + config.batch_size] for i in range(0, len(uids), config.batch_size)]
    _sync_uids(session, link, folder, client, snapshot, [(c[0], c[-1]) for c in chunks], 1, since,
               config, result, now, after_import, lease_held, wanted=set(uids))
    # Done: UIDs below UIDNEXT were all looked at by date; from here on the new numbering is the checkpoint.
    folder.last_uid = max(folder.last_uid, info.uidnext - 1)
    folder.rescan_since = None
    _ensure_held(session, lease_held)
    session.commit()


def _sync_folder(session: Session, link: MailboxLink, folder: MailboxFolder, client: MailboxClient,
                 snapshot: Callable[[], AccountSnapshot], config: EngineConfig, result: PassResult, now: datetime,
                 after_import: AfterImport, lease_held: LeaseHeld) -> None:
    """Import what is new in one folder since its checkpoint (or since the link time during a re-baseline)."""
    info = client.examine(folder.name)
    if info.uidvalidity != folder.uidvalidity:
        info = _confirmed_uidvalidity(client, folder, info)
        if info.uidvalidity != folder.uidvalidity:
            _start_rebaseline(session, link, folder, info, lease_held)
    if folder.rescan_since is not None:
        _rescan(session, link, folder, client, info, snapshot(), config, result, now, after_import, lease_held)
        return
    if info.uidnext - 1 <= folder.last_uid:
        return
    _sync_uids(session, link, folder, client, snapshot(),
               _batches(folder.last_uid + 1, info.uidnext - 1, config.batch_size),
               folder.boundary_uidnext, None, config, result, now, after_import, lease_held)


def _backoff(failures: int, config: EngineConfig) -> timedelta:
    """Exponential backoff with jitter, so failing servers are not hammered in step."""
    delay = min(config.backoff_base_seconds * 2 ** max(failures - 1, 0), config.backoff_max_seconds)
    return timedelta(seconds=delay * random.uniform(0.5, 1.0))


# Failure codes that blame the stored credentials: 要再認証, and no retries until the member enters them again.
# Everything else (network, server trouble, a login the server could not check now) is エラー with backoff.
# OAuth2: a token refused even after a refresh, and a refresh token the provider no longer accepts (revoked,
# password changed, expired); the provider being down (oauth_unavailable) is エラー.
REAUTH_CODES = frozenset({"imap_login", "imap_token", "oauth_reauth"})


def needs_reauthentication(error: MailboxError) -> bool:
    """Whether a failed pass needs the member (要再認証) rather than a later retry (エラー)."""
    return error.code in REAUTH_CODES


def _record_failure(session: Session, link: MailboxLink, error: MailboxError, now: datetime,
                    config: EngineConfig, result: PassResult) -> None:
    """エラー with backoff for network and server trouble; 要再認証 (no retries) for refused credentials."""
    session.rollback()
    link.last_error, link.last_error_at = error.message, now
    link.failure_count += 1
    if needs_reauthentication(error):
        link.state, link.next_attempt_at = LinkState.REAUTH, None
    else:
        link.state, link.next_attempt_at = LinkState.ERROR, now + _backoff(link.failure_count, config)
    session.commit()
    result.state, result.error = link.state, error.message


def _prune_import_log(session: Session, link_id: int, keep: int) -> None:
    """Keep only the most recent entries of a link's import log."""
    cutoff = session.scalar(select(ImportLogEntry.id).where(ImportLogEntry.link_id == link_id)
                            .order_by(ImportLogEntry.id.desc()).offset(keep).limit(1))
    if cutoff is not None:
        session.execute(delete(ImportLogEntry).where(ImportLogEntry.link_id == link_id,
                                                     ImportLogEntry.id <= cutoff))


def sync_link(session: Session, link: MailboxLink, connect: Callable[[MailboxLink], MailboxClient],
              now: Callable[[], datetime], config: EngineConfig = EngineConfig(),
              after_import: AfterImport = nothing_after_import, lease_held: LeaseHeld = always_held) -> PassResult:
    """One pass over INBOX and Sent of a link; failures are recorded on the link, never raised.

    A pass whose lease went to another pass (`lease_held` says False) stops before its next commit, leaving the
    link as the other pass makes it: skipped, with nothing recorded.
    """
    result = PassResult(link.id)
    if link.state in (LinkState.UNLINKED, LinkState.REAUTH):
        result.skipped, result.state = True, link.state
        return result
    try:
        client = connect(link)
    except MailboxError as error:
        _record_failure(session, link, error, now(), config, result)
        return result
    try:
        # Read once, and only when a folder has something new: an idle pass makes no query for it.
        snapshot = functools.cache(lambda: account_snapshot(session, link.account_id))
        for folder in sorted(link.folders, key=lambda f: f.role.value):
            _sync_folder(session, link, folder, client, snapshot, config, result, now(), after_import, lease_held)
        _ensure_held(session, lease_held)
    except LeaseLost:
        result.skipped, result.error = True, "別の処理が同期中です。"
        return result
    except MailboxError as error:
        _record_failure(session, link, error, now(), config, result)
        return result
    except OSError as error:  # a client that lets a dropped connection through as it is
        _record_failure(session, link, server_error(error), now(), config, result)
        return result
    finally:
        client.close()
    link.state, link.failure_count, link.next_attempt_at = LinkState.ACTIVE, 0, None
    link.last_synced_at = now()
    if result.excluded or result.too_large:  # only a pass that added to the import log can make it too long
        _prune_import_log(session, link.id, config.import_log_keep)
    session.commit()
    return result


def claim_lease(session: Session, link_id: int, token: str, now: datetime, seconds: int) -> bool:
    """Take the link's sync lease for one pass in one short transaction; False while any other pass holds it.

    The token is per pass, never per process: the scheduler and 「今すぐ同期」 share a process and must not run
    two passes over one link at once.
    """
    result = session.execute(
        update(MailboxLink).where(MailboxLink.id == link_id, (MailboxLink.lease_owner.is_(None))
                                  | (MailboxLink.lease_expires_at < now))
        .values(lease_owner=token, lease_expires_at=now + timedelta(seconds=seconds)))
    session.commit()
    return result.rowcount == 1


def renew_lease(session: Session, link_id: int, token: str, now: datetime, seconds: int) -> bool:
    """Push the pass's lease forward (the heartbeat); False when the pass no longer holds it."""
    result = session.execute(
        update(MailboxLink).where(MailboxLink.id == link_id, MailboxLink.lease_owner == token)
        .values(lease_expires_at=now + timedelta(seconds=seconds)))
    session.commit()
    return result.rowcount == 1


def release_lease(session: Session, link_id: int, token: str) -> None:
    """Give the lease back after a pass."""
    session.execute(update(MailboxLink).where(MailboxLink.id == link_id, MailboxLink.lease_owner == token)
                    .values(lease_owner=None, lease_expires_at=None))
    session.commit()
