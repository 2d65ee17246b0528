"""The imapclient adapter hands the engine its own error: a server failure mid-pass is a MailboxError."""
import imaplib

import pytest
from imapclient import IMAPClient

from portal.mailsync.client import HEADER_KEY, ImapMailboxClient, _envelopes_of_usual_shape
from portal.mailsync.connection import MailboxError


class BrokenServer:
    """An IMAPClient stand-in whose every command fails the way a dying server makes imapclient fail."""

    def __init__(self, error: Exception):
        """Fail every command with this error (the envelope FETCH goes through imaplib's command directly)."""
        self.error = error
        self._imap = self

    def select_folder(self, *args, **kwargs):
        """EXAMINE fails."""
        raise self.error

    fetch = search = folder_status = _command = select_folder


@pytest.mark.parametrize("error, words", [
    (IMAPClient.Error("SELECT command error: BAD [b'Unknown command']"), "通信中にエラー"),
    (imaplib.IMAP4.abort("socket error: timed out"), "タイムアウト"),
    (ConnectionResetError("connection dropped"), "通信中にエラー"),
])
def test_server_errors_leave_the_adapter_as_mailbox_errors(error, words):
    """EXAMINE, FETCH and SEARCH failures become MailboxError("server_error") with the member's words."""
    client = ImapMailboxClient(BrokenServer(error))
    for call in (lambda: client.examine("INBOX"), lambda: client.fetch_envelopes(1, 3),
                 lambda: client.fetch_raw([1]), lambda: client.uids_since(None)):
        with pytest.raises(MailboxError) as raised:
            call()
        assert raised.value.code == "server_error" and words in raised.value.message


EXPIRED = IMAPClient.AbortError("command: FETCH => BYE Session invalidated - AccessTokenExpired")


class ExpiringServer:
    """An IMAPClient stand-in that drops the session with Exchange's AccessTokenExpired after some commands."""

    def __init__(self, expire_after: int | None, uidvalidity: int = 7):
        """Answer expire_after commands, then say BYE (None: never)."""
        self.expire_after, self.uidvalidity, self.calls, self.closed = expire_after, uidvalidity, [], False

    def _command(self, name):
        """Count the command; BYE once the token has run out."""
        if self.expire_after is not None and len(self.calls) >= self.expire_after:
            raise EXPIRED
        self.calls.append(name)

    def select_folder(self, name, readonly=False):
        """EXAMINE with a fixed UIDVALIDITY."""
        self._command(("select", name, readonly))
        return {b"UIDVALIDITY": self.uidvalidity, b"UIDNEXT": 10}

    def fetch(self, uids, items):
        """Bodies of the UIDs."""
        self._command(("fetch", tuple(uids)))
        return {uid: {b"BODY[]": b"raw %d" % uid} for uid in uids}

    def shutdown(self):
        """Dropped."""
        self.closed = True

    close = shutdown


def test_an_access_token_expiring_mid_pass_gets_one_new_login_in_the_same_folder():
    """BYE ... AccessTokenExpired: log in again with renewed credentials, re-open the folder, repeat the command."""
    first, second = ExpiringServer(expire_after=1), ExpiringServer(expire_after=None)
    logins = []
    client = ImapMailboxClient(first, relogin=lambda: logins.append("renewed") or second)
    client.examine("Sent")
    assert client.fetch_raw([3, 4]) == {3: b"raw 3", 4: b"raw 4"}
    assert logins == ["renewed"] and first.closed
    assert second.calls == [("select", "Sent", True), ("fetch", (3, 4))]


def test_a_second_expiry_in_the_same_pass_is_a_server_error():
    """Only one renewal per pass: a token expiring again fails the pass (retried later with backoff)."""
    client = ImapMailboxClient(ExpiringServer(expire_after=0), relogin=lambda: ExpiringServer(expire_after=0))
    with pytest.raises(MailboxError) as raised:
        client.fetch_raw([1])
    assert raised.value.code == "server_error"


def test_a_refused_renewal_ends_the_pass_with_its_own_error():
    """The refresh itself is refused (invalid_grant): that error, not a server error, reaches the engine."""
    def relogin():
        raise MailboxError("oauth_reauth", "再度サインインして連携してください。")

    client = ImapMailboxClient(ExpiringServer(expire_after=0), relogin=relogin)
    with pytest.raises(MailboxError) as raised:
        client.fetch_raw([1])
    assert raised.value.code == "oauth_reauth"


def test_a_folder_renumbered_during_the_new_login_is_not_read_with_old_uids():
    """After the new login the folder has another UIDVALIDITY: the pass stops instead of fetching wrong UIDs."""
    second = ExpiringServer(expire_after=None, uidvalidity=8)
    client = ImapMailboxClient(ExpiringServer(expire_after=1), relogin=lambda: second)
    client.examine("INBOX")
    with pytest.raises(MailboxError) as raised:
        client.fetch_raw([1])
    assert raised.value.code == "server_error" and ("fetch", (1,)) not in second.calls


def test_password_links_do_not_log_in_again_on_an_expiry_message():
    """Without relogin (password links) a dropped session stays a server error."""
    with pytest.raises(MailboxError) as raised:
        ImapMailboxClient(ExpiringServer(expire_after=0)).fetch_raw([1])
    assert raised.value.code == "server_error"


LINE = b'7 (UID 42 RFC822.SIZE 1234 INTERNALDATE " 7-Dec-2026 13:40:00 +0900" ' + HEADER_KEY + b" {11}"


@pytest.mark.parametrize("lines", [
    [(LINE, b"From: a@b\r\n"), b")", b"8 (UID 43 FLAGS (\\Seen))"],  # an unsolicited FLAGS update
    [(LINE, b"From: a@b\r\n"), b")", b"9 (UID 44 RFC822.SIZE 0 INTERNALDATE \"01-Jan-1970 00:00:00 +0000\" "
     + HEADER_KEY + b" NIL)"],  # expunged meanwhile
    [(LINE.replace(b"UID 42 RFC822.SIZE 1234", b"RFC822.SIZE 1234 UID 42"), b"From: a@b\r\n"), b")"],  # other order
    [(LINE, b"From: a@b\r\n"), b" FLAGS (\\Seen))"],
])
def test_an_unusual_envelope_answer_goes_to_the_general_parser(lines):
    """Only the exact usual shape is read by the fast reader; anything else is left to imapclient's parser."""
    assert _envelopes_of_usual_shape(lines) is None


def test_the_usual_envelope_answer_keeps_the_servers_zone():
    """UID, size, arrival time with its zone, and the header literal as bytes; no FETCH line at all is no mail."""
    [envelope] = _envelopes_of_usual_shape([(LINE, b"From: a@b\r\n"), b")"])
    assert (envelope.uid, envelope.size, envelope.headers) == (42, 1234, b"From: a@b\r\n")
    assert envelope.internal_date.isoformat() == "2026-12-07T13:40:00+09:00"
    assert _envelopes_of_usual_shape([None]) == []


class ScriptedFetch:
    """An IMAPClient stand-in whose envelope FETCH answers the given untagged lines (as imaplib hands them over)."""

    def __init__(self, lines):
        self.lines, self._imap = lines, self

    def _command(self, *args):
        return b"A1"

    def _command_complete(self, name, tag):
        return "OK", [b"FETCH completed"]

    def _checkok(self, command, typ, data):
        pass

    def _untagged_response(self, typ, data, name):
        return typ, self.lines


def test_a_reply_no_reader_understands_is_the_servers_error():
    """Garbage from the server ends the pass as MailboxError("server_error"), as every other server failure does."""
    with pytest.raises(MailboxError) as raised:
        ImapMailboxClient(ScriptedFetch([b"1 (UID 1 RFC822.SIZE (oops"])).fetch_envelopes(1, 3)
    assert raised.value.code == "server_error"


def test_an_unreadable_arrival_time_is_left_to_the_general_parser():
    """The fast reader does not guess: imapclient's parser reads the line, as before the fast reader existed."""
    lines = [(LINE.replace(b" 7-Dec-2026 13:40:00 +0900", b"not a date"), b"From: a@b\r\n"), b")"]
    assert _envelopes_of_usual_shape(lines) is None
    [envelope] = ImapMailboxClient(ScriptedFetch(lines)).fetch_envelopes(40, 45)
    assert envelope.uid == 42 and envelope.internal_date.tzinfo is not None


def test_the_general_parser_still_reads_what_the_fast_one_leaves():
    """An unsolicited FLAGS line among the usual ones: every envelope still comes, through imapclient's parser."""
    lines = [(LINE, b"From: a@b\r\n"), b")", b"8 (UID 43 FLAGS (\\Seen))"]
    [envelope] = ImapMailboxClient(ScriptedFetch(lines)).fetch_envelopes(40, 45)
    assert (envelope.uid, envelope.size, envelope.headers) == (42, 1234, b"From: a@b\r\n")
    assert envelope.internal_date.isoformat() == "2026-12-07T13:40:00+09:00"
