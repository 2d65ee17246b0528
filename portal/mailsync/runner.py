"""Running passes over many links: which are due, connecting with the provider's credentials, a bounded pool, leases."""
import bisect
import logging
import os
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from portal.mailsync.client import ImapMailboxClient
from portal.mailsync.connection import (TOKEN_REFUSED_CODES, ConnectionPolicy, MailboxError, ServerSettings,
                                        close_quietly, open_imap)
from portal.mailsync.credentials import CredentialsProvider
from portal.mailsync.engine import (AfterImport, EngineConfig, MailboxClient, PassResult, claim_lease,
                                    nothing_after_import, release_lease, renew_lease, sync_link)
from portal.mailsync.pool import ImapConnectionPool
from portal.models import EMAIL_FEATURE, Account, AccountStatus, FeatureContract, LinkState, MailboxLink

SessionScope = Callable[[], AbstractContextManager[Session]]
Connect = Callable[[MailboxLink], MailboxClient]

log = logging.getLogger(__name__)


BUSY = "別の処理が同期中です。"


def _syncable_links():
    """The query of links that sync (now or after their backoff): active or in error, in active accounts with メール on."""
    return (select(MailboxLink.id).join(Account, Account.id == MailboxLink.account_id)
            .join(FeatureContract, (FeatureContract.account_id == Account.id)
                  & (FeatureContract.feature == EMAIL_FEATURE))
            .where(MailboxLink.state.in_([LinkState.ACTIVE, LinkState.ERROR]), Account.status == AccountStatus.ACTIVE,
                   FeatureContract.enabled.is_(True))
            .order_by(MailboxLink.id))


def _due_links(now: datetime):
    """The query of links to sync now: active or in error past their backoff, in active accounts with メール on."""
    return _syncable_links().where(or_(MailboxLink.next_attempt_at.is_(None), MailboxLink.next_attempt_at <= now))


def due_link_ids(session: Session, now: datetime) -> list[int]:
    """Links to sync now: active or in error past their backoff, in active accounts with メール on."""
    return list(session.scalars(_due_links(now)))


def claim_due_links(session: Session, now: datetime, lease_seconds: int, after_id: int, synced_before: datetime,
                    limit: int, among: list[int] | None = None) -> tuple[list[tuple[int, str]], int | None]:
    """Take the leases of up to `limit` due links past `after_id` in one short transaction.

    Returns [(link id, pass token)] and the last id looked at (None: no due link is left past `after_id`).

    Several worker processes share the links this way. On PostgreSQL `FOR UPDATE SKIP LOCKED` lets each claim
    rows the others are not claiming at this moment instead of queueing behind them; the lease (free or lapsed)
    stays the guard, on SQLite too, where the row lock clause is left out. Links synced since `synced_before` (the
    round's start, or earlier for the scheduler) were done by another worker and are left alone. `among` limits the claim to those links (the ones
    this process keeps a connection for).
    """
    lease_free = or_(MailboxLink.lease_owner.is_(None), MailboxLink.lease_expires_at < now)
    query = _due_links(now).where(MailboxLink.id > after_id, lease_free,
                                  or_(MailboxLink.last_synced_at.is_(None), MailboxLink.last_synced_at < synced_before))
    if among is not None:
        query = query.where(MailboxLink.id.in_(among))
    link_ids = list(session.scalars(query.limit(limit).with_for_update(of=MailboxLink, skip_locked=True)))
    claimed = []
    for link_id in link_ids:
        token = pass_token()
        # Conditional, like claim_lease: without row locks (SQLite) another worker may have read the same rows.
        taken = session.execute(update(MailboxLink).where(MailboxLink.id == link_id, lease_free)
                                .values(lease_owner=token, lease_expires_at=now + timedelta(seconds=lease_seconds)))
        if taken.rowcount == 1:
            claimed.append((link_id, token))
    session.commit()
    return claimed, (link_ids[-1] if link_ids else None)


def connector(credentials: CredentialsProvider, policy: ConnectionPolicy, pool: ImapConnectionPool | None = None
              ) -> Callable[[MailboxLink], ImapMailboxClient]:
    """Build the engine's connect function: the link's IMAP settings from the provider, then log in.

    A refused access token (AUTHENTICATIONFAILED at login, or "BYE ... AccessTokenExpired" in the middle of the
    pass) gets one renewal of the credentials and one new login; what fails after that is the pass's failure.
    With a pool, a password link's connection from its last pass is used again when it was opened with the same
    settings; if the server dropped it meanwhile, the first command finds out and a fresh login takes over.
    """
    def connect(link: MailboxLink) -> ImapMailboxClient:
        opened_with: dict[str, ServerSettings] = {}

        def login(renew: bool = False):
            settings = credentials.imap_settings(link, renew=renew)
            client = open_imap(settings, policy)
            opened_with["settings"] = settings
            return client

        def fresh():
            try:
                return login()
            except MailboxError as error:
                if error.code not in TOKEN_REFUSED_CODES:
                    raise
                return login(renew=True)

        settings = credentials.imap_settings(link) if pool is not None else None
        if settings is None or settings.xoauth2:
            # OAuth2 sessions are not kept: a login each pass is where a revoked grant shows (要再認証).
            return ImapMailboxClient(fresh(), relogin=lambda: login(renew=True))
        client = pool.take(link.id, settings)
        reused = client is not None
        if reused:
            opened_with["settings"] = settings
        else:
            pool.opening()
            try:
                client = fresh()
            except BaseException:
                pool.opening_failed()
                raise

        def release(client, healthy: bool) -> None:
            if healthy:
                pool.give_back(link.id, opened_with["settings"], client)
            else:
                close_quietly(client)
                pool.closed()
        return ImapMailboxClient(client, relogin=lambda: login(renew=True), reopen=fresh if reused else None,
                                 release=release)
    return connect


def pass_token() -> str:
    """A lease token for one pass: host and pid say who holds it, the random part tells two passes of one process apart."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(8)}"


class LeaseHeartbeat:
    """Renews a pass's lease every third of its length on its own session while the pass works.

    A live pass keeps its link however long one fetch takes; a killed one stops renewing and its lease lapses
    after `seconds`, so the link syncs again within about a minute instead of waiting out a long fixed lease.
    """

    def __init__(self, scope: SessionScope, link_id: int, token: str, now: Callable[[], datetime], seconds: int):
        self.scope, self.link_id, self.token, self.now, self.seconds = scope, link_id, token, now, seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{link_id}", daemon=True)

    def __enter__(self) -> "LeaseHeartbeat":
        """Start renewing."""
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop renewing before the lease is released."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        """Renew until stopped; a failed renewal is retried on the next beat (the lease still has two thirds left)."""
        while not self._stop.wait(self.seconds / 3):
            try:
                with self.scope() as session:
                    if not renew_lease(session, self.link_id, self.token, self.now(), self.seconds):
                        self.lost = True
                        log.warning("sync lease of link %s was lost to another pass", self.link_id)
                        return
            except Exception:  # a busy database must not end the pass; the next beat retries
                log.exception("could not renew the sync lease of link %s", self.link_id)


def sync_one(scope: SessionScope, link_id: int, connect: Connect, now: Callable[[], datetime], config: EngineConfig,
             after_import: AfterImport = nothing_after_import) -> PassResult:
    """Claim the link's lease for this pass, run it with a heartbeat, release; a held lease means another pass is on it."""
    token = pass_token()
    with scope() as session:
        if not claim_lease(session, link_id, token, now(), config.lease_seconds):
            return PassResult(link_id, skipped=True, error=BUSY)
    return _run_leased(scope, link_id, token, connect, now, config, after_import)


def _run_leased(scope: SessionScope, link_id: int, token: str, connect: Connect, now: Callable[[], datetime],
                config: EngineConfig, after_import: AfterImport) -> PassResult:
    """Run a pass whose lease `token` holds, with a heartbeat; the pass stops when the heartbeat loses the lease."""
    with scope() as session:
        try:
            with LeaseHeartbeat(scope, link_id, token, now, config.lease_seconds) as heartbeat:
                link = session.get(MailboxLink, link_id)
                return sync_link(session, link, connect, now, config, after_import,
                                 lease_held=lambda: not heartbeat.lost)
        finally:
            session.rollback()
            release_lease(session, link_id, token)


def sync_many(scope: SessionScope, link_ids: list[int], connect: Connect, now: Callable[[], datetime],
              config: EngineConfig, workers: int = 4, after_import: AfterImport = nothing_after_import
              ) -> list[PassResult]:
    """Sync links concurrently with a bounded pool, so one slow server does not hold up the rest."""
    if not link_ids:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(link_ids)))) as pool:
        return list(pool.map(lambda link_id: sync_one(scope, link_id, connect, now, config, after_import),
                             link_ids))


def sync_due(scope: SessionScope, connect: Connect, now: Callable[[], datetime], config: EngineConfig,
             workers: int = 4, claim_batch: int = 5, after_import: AfterImport = nothing_after_import,
             pool: ImapConnectionPool | None = None, skip_synced_within: float = 0) -> list[PassResult]:
    """One round over every due link, shared with any other worker process doing the same.

    Each of `workers` threads claims a small batch of due links (`claim_due_links`), syncs them and claims the
    next, until no due link is left past the round's cursor. A link whose lease lapsed while it waited in its
    batch (the passes before it took long) was taken by another worker: it is skipped. With a pool, the links
    this process keeps a connection for are claimed first (other workers keep theirs), and connections of links
    that no longer sync are closed. `skip_synced_within` (seconds): links any process synced that recently are
    not due (the scheduler's rounds in several workers start at different times; without it each would sync
    again what another just did).
    """
    synced_before = now() - timedelta(seconds=skip_synced_within)
    phases: list[list[int] | None] = [None]
    if pool is not None:
        with scope() as session:
            pool.keep_only(session.scalars(_syncable_links()))
        phases = [sorted(pool.idle_link_ids()), None]
    cursor_lock, cursors = threading.Lock(), [0] * len(phases)
    results: list[PassResult] = []

    def work() -> None:
        for phase, among in enumerate(phases):
            if among != []:
                work_through(phase, among)

    def work_through(phase: int, among: list[int] | None) -> None:
        while True:
            with cursor_lock:
                # A window of the kept links past the cursor, not all of them: a thousand ids bound to every
                # claim cost more than the claim.
                window = None if among is None else \
                    among[bisect.bisect_right(among, cursors[phase]):][:claim_batch * 4]
                if window == []:
                    return
                with scope() as session:
                    claimed, last_id = claim_due_links(session, now(), config.lease_seconds, cursors[phase],
                                                       synced_before, claim_batch, window)
                if last_id is None and window is None:
                    return
                cursors[phase] = last_id if last_id is not None else window[-1]
            claimed_at = now()
            for link_id, token in claimed:
                still_ours = True
                if (now() - claimed_at).total_seconds() > config.lease_seconds / 3:  # waited behind slow passes
                    with scope() as session:
                        still_ours = renew_lease(session, link_id, token, now(), config.lease_seconds)
                if still_ours:
                    results.append(_run_leased(scope, link_id, token, connect, now, config, after_import))
                else:
                    results.append(PassResult(link_id, skipped=True, error=BUSY))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(work) for _ in range(max(1, workers))]:
            future.result()
    return sorted(results, key=lambda result: result.link_id)
