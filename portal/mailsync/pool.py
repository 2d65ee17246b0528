"""Authenticated IMAP connections kept open between passes, so an idle mailbox costs two EXAMINEs, not a TLS login.

One process keeps at most one idle connection per link, at most `per_user` per mailbox login (mail servers count
connections per user and address: Dovecot allows 10) and at most `max_open` in all, idle and in use. A connection
is handed out again only for the same server and credentials (a changed password or a renewed OAuth2 token gets a
new login), only after a pass that ended without an error, and only while it has been idle less than `max_idle`.
"""
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable

from imapclient import IMAPClient

from portal.mailsync.connection import ServerSettings, close_quietly

# Dovecot logs an idle client out after 30 minutes; a connection idle longer than this is not worth checking.
MAX_IDLE_SECONDS = 15 * 60


def settings_key(settings: ServerSettings) -> str:
    """What a pooled connection was opened with: server, login and a digest of the secret (never the secret)."""
    secret = hashlib.sha256(settings.password.encode("utf-8", "surrogatepass")).hexdigest()
    return "\0".join((settings.host, str(settings.port), settings.security.value, settings.username,
                      str(settings.xoauth2), secret))


@dataclass
class _Idle:
    """A connection waiting for its link's next pass."""

    client: IMAPClient
    key: str
    user: tuple[str, str]  # (host, username): what the server's per-user limit counts
    since: float


class ImapConnectionPool:
    """Idle authenticated connections by link id, least recently used first; thread-safe."""

    def __init__(self, max_open: int, per_user: int = 2, max_idle: float = MAX_IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_open, self.per_user, self.max_idle, self.clock = max_open, per_user, max_idle, clock
        self._idle: OrderedDict[int, _Idle] = OrderedDict()
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def open_count(self) -> int:
        """Connections open now, idle and in use."""
        with self._lock:
            return len(self._idle) + self._in_use

    def idle_link_ids(self) -> list[int]:
        """Links with a connection waiting, most recently used last."""
        with self._lock:
            return list(self._idle)

    def take(self, link_id: int, settings: ServerSettings) -> IMAPClient | None:
        """The link's idle connection if it was opened with these settings and is fresh enough, else None."""
        with self._lock:
            idle = self._idle.pop(link_id, None)
            usable = idle is not None and idle.key == settings_key(settings) and \
                self.clock() - idle.since < self.max_idle
            if usable:
                self._in_use += 1
        if idle is not None and not usable:
            close_quietly(idle.client)  # credentials changed or too old: the server may have dropped it
        return idle.client if usable else None

    def opening(self) -> None:
        """A new connection is about to be opened for a pass: make room under max_open by closing the oldest idle."""
        with self._lock:
            self._in_use += 1
            evicted = self._evict(len(self._idle) + self._in_use - self.max_open)
        for client in evicted:
            close_quietly(client)

    def opening_failed(self) -> None:
        """The connection announced by opening() was never opened (login refused, server down)."""
        with self._lock:
            self._in_use -= 1

    def give_back(self, link_id: int, settings: ServerSettings, client: IMAPClient) -> None:
        """A pass ended well: keep its connection for the link's next pass (or close it if over a limit)."""
        user = (settings.host, settings.username)
        with self._lock:
            self._in_use -= 1
            same_user = sum(1 for idle in self._idle.values() if idle.user == user)
            keep = same_user < self.per_user and len(self._idle) + self._in_use < self.max_open
            if keep:
                replaced = self._idle.pop(link_id, None)
                self._idle[link_id] = _Idle(client, settings_key(settings), user, self.clock())
        if not keep:
            close_quietly(client)
        elif replaced is not None:
            close_quietly(replaced.client)

    def closed(self) -> None:
        """A connection taken or opened for a pass was closed instead of given back (the pass failed)."""
        with self._lock:
            self._in_use -= 1

    def keep_only(self, link_ids: Iterable[int]) -> None:
        """Close the idle connections of every other link (unlinked, 要再認証, feature or account off)."""
        wanted = set(link_ids)
        with self._lock:
            gone = [self._idle.pop(link_id) for link_id in list(self._idle) if link_id not in wanted]
        for idle in gone:
            close_quietly(idle.client)

    def discard(self, link_id: int) -> None:
        """Close the link's idle connection, if any."""
        self.keep_only(set(self.idle_link_ids()) - {link_id})

    def close_all(self) -> None:
        """Close every idle connection (a worker stopping)."""
        self.keep_only(())

    def _evict(self, count: int) -> list[IMAPClient]:
        """Remove up to `count` least recently used idle connections (caller holds the lock and closes them)."""
        evicted = []
        while count > 0 and self._idle:
            evicted.append(self._idle.popitem(last=False)[1].client)
            count -= 1
        return evicted
