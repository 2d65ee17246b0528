"""The mailbox client the engine uses: read-only EXAMINE, header prefetch and BODY.PEEK[] fetches over imapclient.

This adapter is the only part of the import that knows imapclient: its errors leave here as MailboxError.
"""
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable, TypeVar

from imapclient import IMAPClient
from imapclient.datetime_util import parse_to_datetime
from imapclient.imapclient import join_message_ids
from imapclient.response_parser import parse_fetch_response

from portal.mailsync.connection import (ConnectionPolicy, MailboxError, ServerSettings, close_quietly,
                                        is_token_expiry, open_imap, server_error)

T = TypeVar("T")

ENVELOPE_HEADERS = b"FROM TO CC BCC MESSAGE-ID SUBJECT DATE"
HEADER_ITEM = b"BODY.PEEK[HEADER.FIELDS (" + ENVELOPE_HEADERS + b")]"
HEADER_KEY = b"BODY[HEADER.FIELDS (" + ENVELOPE_HEADERS + b")]"
ENVELOPE_ITEMS = b"(RFC822.SIZE INTERNALDATE " + HEADER_ITEM + b")"
# The one answer shape Dovecot and most servers give to the envelope FETCH, as imaplib hands over its first line
# (the header block follows as the literal). Anything else goes to imapclient's general parser.
_ENVELOPE_LINE = re.compile(rb'\d+ \(UID (\d+) RFC822\.SIZE (\d+) INTERNALDATE "([^"\r\n]+)" '
                            + re.escape(HEADER_KEY) + rb" \{\d+\}")


@dataclass(frozen=True)
class FolderInfo:
    """A folder's identity and the UID its next message will get."""

    uidvalidity: int
    uidnext: int


@dataclass(frozen=True)
class FetchedEnvelope:
    """What the rules need, fetched without downloading the body."""

    uid: int
    size: int
    internal_date: datetime
    headers: bytes


@contextmanager
def _server_errors():
    """Turn imapclient's and the socket's errors in the middle of a pass into the engine's MailboxError."""
    try:
        yield
    except (IMAPClient.Error, OSError) as error:
        raise server_error(error) from error


class ImapMailboxClient:
    """imapclient adapter: opens folders read-only and never stores flags, moves or deletes anything."""

    def __init__(self, client: IMAPClient, relogin: Callable[[], IMAPClient] | None = None,
                 reopen: Callable[[], IMAPClient] | None = None,
                 release: Callable[[IMAPClient, bool], None] | None = None):
        """Wrap a logged-in client.

        relogin (OAuth2 links) logs in again with renewed credentials. reopen is given for a connection kept from
        an earlier pass: if its first command fails (the server dropped it while it was idle) one fresh login
        replaces it and the command is retried. release takes the connection back at close, with whether the
        pass saw no error on it (a pool keeps it), instead of logging out.
        """
        self._relogin, self._reopen, self._release = relogin, reopen, release
        self._failed = False
        self._folder: tuple[str, int] | None = None  # the open folder and its UIDVALIDITY
        self._adopt(client)

    def _adopt(self, client: IMAPClient) -> None:
        """Use this connection from now on."""
        self._client = client
        self._client.normalise_times = False  # keep INTERNALDATE's zone instead of local naive times
        self._client.use_uid = True  # every FETCH and SEARCH below speaks UIDs, never sequence numbers

    def _call(self, operation: Callable[[IMAPClient], T]) -> T:
        """Run one command, marking the connection failed if it raises."""
        try:
            return self._run(operation)
        except BaseException:
            self._failed = True
            raise

    def _run(self, operation: Callable[[IMAPClient], T]) -> T:
        """Run one command; a kept connection that fails at once, or an access token that expires mid-pass, gets
        one new login and one retry."""
        try:
            with _server_errors():
                result = operation(self._client)
            self._reopen = None  # the connection works: a later failure is the pass's own
            return result
        except MailboxError as error:
            if self._reopen is not None and self._folder is None:
                reopen, self._reopen = self._reopen, None
                close_quietly(self._client)
                self._adopt(reopen())  # MailboxError (password changed, server down) ends the pass
                with _server_errors():
                    return operation(self._client)
            if self._relogin is None or not is_token_expiry(error.__cause__):
                raise
        relogin, self._relogin = self._relogin, None  # once per pass
        close_quietly(self._client)
        self._adopt(relogin())  # MailboxError (要再認証, provider down) ends the pass
        if self._folder is not None:
            name, uidvalidity = self._folder
            with _server_errors():
                reopened = self._client.select_folder(name, readonly=True)
            if int(reopened[b"UIDVALIDITY"]) != uidvalidity:  # renumbered meanwhile: the next pass rescans
                raise server_error(OSError("UIDVALIDITY changed during a re-login"))
        with _server_errors():
            return operation(self._client)

    @classmethod
    def connect(cls, settings: ServerSettings, policy: ConnectionPolicy) -> "ImapMailboxClient":
        """Log in (raises MailboxError with the member's message)."""
        return cls(open_imap(settings, policy))

    def examine(self, folder: str) -> FolderInfo:
        """Open the folder read-only (EXAMINE) and return UIDVALIDITY and UIDNEXT."""
        self._folder = None
        response = self._call(lambda client: client.select_folder(folder, readonly=True))
        uidnext = response.get(b"UIDNEXT")
        if uidnext is None:  # some servers omit it on EXAMINE; STATUS always has it
            uidnext = self._call(lambda client: client.folder_status(folder, [b"UIDNEXT"]))[b"UIDNEXT"]
        self._folder = (folder, int(response[b"UIDVALIDITY"]))
        return FolderInfo(int(response[b"UIDVALIDITY"]), int(uidnext))

    def fetch_envelopes(self, first_uid: int, last_uid: int) -> list[FetchedEnvelope]:
        """Size, arrival time and the rule headers of UIDs first..last (explicit UIDs: no `n:*` surprise)."""
        if last_uid < first_uid:
            return []
        def fetch(client: IMAPClient):
            # Read inside the command: a reply neither reader understands is the server's error (MailboxError).
            lines = _untagged_fetch(client, list(range(first_uid, last_uid + 1)))
            envelopes = _envelopes_of_usual_shape(lines)
            return envelopes if envelopes is not None else parse_fetch_response(lines, False, True)
        response = self._call(fetch)
        if isinstance(response, list):
            return [e for e in response if first_uid <= e.uid <= last_uid]
        envelopes = []
        for uid, data in response.items():
            if not first_uid <= uid <= last_uid:
                continue  # unsolicited or out-of-range responses
            if data.get(HEADER_KEY) is None:
                # Expunged by another session while this one still had it in view: Dovecot answers with NIL
                # headers, size 0 and a 1970 INTERNALDATE. A message that is gone was never seen: no decision and
                # no log row. Passing its UID with the batch's checkpoint is safe: a UID is never reused within a
                # UIDVALIDITY, and mail moved elsewhere gets a new UID there. (An existing message without any of
                # these header fields answers an empty header block, not NIL.)
                continue
            internal = data.get(b"INTERNALDATE") or datetime.now(timezone.utc)
            if internal.tzinfo is None:
                internal = internal.replace(tzinfo=timezone.utc)
            envelopes.append(FetchedEnvelope(uid, int(data.get(b"RFC822.SIZE", 0)), internal, data[HEADER_KEY]))
        return sorted(envelopes, key=lambda envelope: envelope.uid)

    def fetch_raw(self, uids: list[int]) -> dict[int, bytes]:
        """The full bytes of the given UIDs, with PEEK so nothing is marked read."""
        if not uids:
            return {}
        response = self._call(lambda client: client.fetch(uids, [b"BODY.PEEK[]"]))
        return {uid: data[b"BODY[]"] for uid, data in response.items() if uid in uids and b"BODY[]" in data}

    def uids_since(self, day: date) -> list[int]:
        """UIDs of messages that arrived on or after the day (used after a UIDVALIDITY reset)."""
        return sorted(self._call(lambda client: client.search(["SINCE", day])))

    def close(self) -> None:
        """Hand the connection back to its pool, or log out (drop it if the server is gone)."""
        if self._release is not None:
            self._release(self._client, not self._failed)
            return
        try:
            self._client.logout()
        except Exception:  # noqa: BLE001 - closing is best effort
            close_quietly(self._client)


def _untagged_fetch(client: IMAPClient, uids: list[int]) -> list:
    """IMAPClient.fetch of the envelope items up to its parse: the FETCH lines as imaplib read them.

    imapclient's general response parser was the biggest cost of deciding a batch, so the usual answer is read by
    `_envelopes_of_usual_shape` instead. The steps are imapclient's own (pinned in requirements.txt).
    """
    imap = client._imap
    tag = imap._command("UID", "FETCH", join_message_ids(uids), ENVELOPE_ITEMS)
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    return imap._untagged_response(typ, data, "FETCH")[1]


def _envelopes_of_usual_shape(lines: list) -> list[FetchedEnvelope] | None:
    """The envelopes when every line has the usual shape, else None (unsolicited FLAGS, NIL headers, another order).

    imaplib gives each message as (first line, header literal) followed by the closing b")".
    """
    if lines == [None]:  # imaplib's answer when the server sent no FETCH line at all
        return []
    if len(lines) % 2:
        return None
    envelopes = []
    for first, closing in zip(lines[::2], lines[1::2]):
        if not isinstance(first, tuple) or closing != b")":
            return None
        match = _ENVELOPE_LINE.fullmatch(first[0])
        if match is None:
            return None
        try:
            internal = parse_to_datetime(match.group(3), normalise=False)
        except ValueError:
            return None  # the general parser decides what an unreadable date means
        if internal.tzinfo is None:
            internal = internal.replace(tzinfo=timezone.utc)
        envelopes.append(FetchedEnvelope(int(match.group(1)), int(match.group(2)), internal, first[1]))
    return sorted(envelopes, key=lambda envelope: envelope.uid)
