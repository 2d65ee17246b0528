"""Where the portal may connect (hole 10): guarded networks refused before any connection, the name resolved once."""
import socket
import threading
import time

import pytest

from portal.mailsync import network
from portal.mailsync.connection import ConnectionPolicy, MailboxError, ServerSettings, open_imap, open_smtp
from portal.mailsync.network import is_allowed, parse_networks
from portal.models import Security

# Every way of writing "this machine" or a neighbour that a member tried, and the cloud metadata address.
GUARDED_SPELLINGS = ["127.0.0.1", "127.1", "0x7f.1", "2130706433", "0177.0.0.1", "127.255.255.254", "::1",
                     "::ffff:127.0.0.1", "0:0:0:0:0:ffff:7f00:1", "::127.0.0.1", "169.254.169.254", "0.0.0.0", "0",
                     "::", "fe80::1", "224.0.0.1", "255.255.255.255"]


class Listener:
    """A TCP socket on a loopback address that records who connected and hangs up."""

    def __init__(self, host="127.0.0.1", port=0):
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            connection.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener():
    """A listener on 127.0.0.1 (the portal's own loopback services stand in for it)."""
    server = Listener()
    yield server
    server.close()


def wait_for(condition, seconds=2.0) -> bool:
    """Poll until the listener thread has counted what the client already saw."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def settings(host, port, security=Security.NONE):
    """Plain settings on the given host and port."""
    return ServerSettings(host, port, security, "u@example.jp", "password")


@pytest.mark.parametrize("host", GUARDED_SPELLINGS)
def test_every_spelling_of_a_guarded_address_is_refused_by_default(host, listener):
    """IMAP and SMTP: refused before connecting, with one message whatever the port (no port scanner)."""
    policy = ConnectionPolicy(allow_plaintext=True, extra_ports=(listener.port,))
    messages = set()
    for opener, protocol in ((open_imap, "IMAP"), (open_smtp, "SMTP")):
        for port in (listener.port, 993):
            with pytest.raises(MailboxError) as refused:
                opener(settings(host, port), policy)
            assert refused.value.code == "address_refused"
            assert refused.value.message.startswith(f"{protocol}サーバーのホスト名が、接続できないアドレス")
            messages.add(refused.value.message)
    assert len(messages) == 2 and listener.accepted == 0


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.10", "192.168.1.20", "100.64.0.1", "fd00::25",
                                     "203.0.113.5", "2001:db8::1", "::ffff:192.168.1.20"])
def test_private_and_public_addresses_stay_allowed(address):
    """Company mail servers live on private ranges: only loopback, link-local and the like are guarded."""
    assert is_allowed(address)


def test_the_operator_opens_a_network_and_the_connection_goes_there(listener):
    """MAIL_ALLOWED_NETWORKS=127.0.0.0/8 opens loopback: the portal connects (and the server hangs up)."""
    policy = ConnectionPolicy(allow_plaintext=True, extra_ports=(listener.port,),
                              allowed_networks=parse_networks("127.0.0.0/8,::1/128"))
    with pytest.raises(MailboxError) as failed:
        open_smtp(settings("127.1", listener.port), policy)
    assert failed.value.code != "address_refused" and wait_for(lambda: listener.accepted == 1)
    only_one_host = ConnectionPolicy(allow_plaintext=True, extra_ports=(listener.port,),
                                     allowed_networks=parse_networks("127.0.0.2/32"))
    with pytest.raises(MailboxError) as refused:
        open_smtp(settings("127.0.0.1", listener.port), only_one_host)
    assert refused.value.code == "address_refused" and listener.accepted == 1


def test_the_name_is_resolved_once_and_the_checked_address_is_used(monkeypatch):
    """A name that answers an opened address first and another one next (DNS rebinding) reaches the first only."""
    checked, other = Listener("127.0.0.2"), None
    try:
        other = Listener("127.0.0.1", checked.port)
        answers = ["127.0.0.2", "127.0.0.1", "127.0.0.1"]
        lookups = []

        def rebinding(host, port, *args, **kwargs):
            lookups.append(host)
            address = answers[min(len(lookups) - 1, 2)] if host == "mail.rebind.example" else host
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        policy = ConnectionPolicy(allow_plaintext=True, extra_ports=(checked.port,),
                                  allowed_networks=parse_networks("127.0.0.2/32"))
        for opener in (open_imap, open_smtp):
            lookups.clear()  # each opener starts from the first answer
            with pytest.raises(MailboxError) as failed:
                opener(settings("mail.rebind.example", checked.port), policy)
            assert failed.value.code != "address_refused" and lookups == ["mail.rebind.example"]
        assert wait_for(lambda: checked.accepted == 2) and other.accepted == 0
    finally:
        checked.close()
        if other:
            other.close()


def test_a_name_with_guarded_and_allowed_addresses_uses_only_the_allowed(monkeypatch):
    """Guarded answers are dropped; the connection goes to what remains."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.10", port))])
    assert network.resolve("mixed.example", 993) == [(socket.AF_INET, ("192.0.2.10", 993))]


def test_an_unknown_name_is_host_not_found():
    """A name that does not resolve keeps its own message."""
    with pytest.raises(MailboxError) as failed:
        open_imap(settings("no-such-host.invalid", 993, Security.SSL), ConnectionPolicy())
    assert failed.value.code == "host_not_found"


def test_a_bad_allowed_network_stops_the_portal_at_start(make_app):
    """A typo in MAIL_ALLOWED_NETWORKS is an error at start, not a silently closed network."""
    with pytest.raises(RuntimeError, match="MAIL_ALLOWED_NETWORKS"):
        make_app(MAIL_ALLOWED_NETWORKS="127.0.0.0/8,loopback")
