"""The imapclient adapter hands the engine its own error: a server failure mid-pass is a MailboxError."""
import imaplib

import pytest
from imapclient import IMAPClient

from portal.mailsync.client import ImapMailboxClient
from portal.mailsync.connection import MailboxError


class BrokenServer:
    """An IMAPClient stand-in whose every command fails the way a dying server makes imapclient fail."""

    def __init__(self, error: Exception):
        """Fail every command with this error."""
        self.error = error

    def select_folder(self, *args, **kwargs):
        """EXAMINE fails."""
        raise self.error

    fetch = search = folder_status = select_folder


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
