"""The pool of IMAP connections kept between passes: same settings only, per-user and total limits, pruning."""
from portal.mailsync.connection import ServerSettings
from portal.mailsync.pool import ImapConnectionPool
from portal.models import Security


class FakeConnection:
    """Stands in for a logged-in IMAPClient; remembers being closed."""

    def __init__(self, name):
        self.name, self.closed = name, False

    def close(self):
        self.closed = True


def settings(user="a@example.jp", password="secret", host="imap.example.jp") -> ServerSettings:
    return ServerSettings(host, 993, Security.SSL, user, password)


def kept(pool, link_id, settings_used, name) -> FakeConnection:
    """A pass opened a connection for the link and gave it back."""
    connection = FakeConnection(name)
    pool.opening()
    pool.give_back(link_id, settings_used, connection)
    return connection


def test_a_connection_is_handed_out_again_only_with_the_same_credentials():
    """A changed password (or a renewed token) closes the old session; the new login is the pass's."""
    pool = ImapConnectionPool(max_open=10)
    first = kept(pool, 1, settings(), "first")
    assert pool.take(1, settings()) is first and pool.open_count == 1
    pool.give_back(1, settings(), first)
    assert pool.take(1, settings(password="changed")) is None
    assert first.closed and pool.open_count == 0


def test_old_idle_connections_are_not_used():
    """Past max_idle the server may have logged the session out: it is closed, not tried."""
    now = [0.0]
    pool = ImapConnectionPool(max_open=10, max_idle=60, clock=lambda: now[0])
    first = kept(pool, 1, settings(), "first")
    now[0] = 61
    assert pool.take(1, settings()) is None and first.closed


def test_at_most_max_open_connections_and_per_user_limit():
    """Opening past SYNC_MAX_CONNECTIONS closes the least recently used idle one; a mailbox login keeps at most two."""
    pool = ImapConnectionPool(max_open=3, per_user=2)
    one, two, three = (kept(pool, n, settings(user=f"u{n}@example.jp"), f"c{n}") for n in (1, 2, 3))
    assert pool.open_count == 3
    pool.opening()  # a fourth pass logs in
    assert one.closed and not two.closed and pool.open_count == 3
    pool.opening_failed()
    shared = [kept(pool, n, settings(user="shared@example.jp"), f"s{n}") for n in (10, 11, 12)]
    assert [c.closed for c in shared] == [False, False, True]
    assert pool.open_count <= 3


def test_links_that_no_longer_sync_lose_their_connection():
    """Unlinked, 要再認証, メール off: the round's keep_only closes their sessions."""
    pool = ImapConnectionPool(max_open=10)
    one, two = kept(pool, 1, settings(user="u1@example.jp"), "c1"), kept(pool, 2, settings(user="u2@example.jp"), "c2")
    pool.keep_only([2])
    assert one.closed and not two.closed and pool.idle_link_ids() == [2]
    pool.close_all()
    assert two.closed and pool.open_count == 0
