"""Running passes over many links: which are due, connecting with the provider's credentials, a bounded pool, leases."""
import logging
import os
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Callable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from portal.mailsync.client import ImapMailboxClient
from portal.mailsync.connection import TOKEN_REFUSED_CODES, ConnectionPolicy, MailboxError, open_imap
from portal.mailsync.credentials import CredentialsProvider
from portal.mailsync.engine import (AfterImport, EngineConfig, MailboxClient, PassResult, claim_lease,
                                    nothing_after_import, release_lease, renew_lease, sync_link)
from portal.models import EMAIL_FEATURE, Account, AccountStatus, FeatureContract, LinkState, MailboxLink

SessionScope = Callable[[], AbstractContextManager[Session]]
Connect = Callable[[MailboxLink], MailboxClient]

log = logging.getLogger(__name__)


def due_link_ids(session: Session, now: datetime) -> list[int]:
    """Links to sync now: active or in error past their backoff, in active accounts with メール on."""
    return list(session.scalars(
        select(MailboxLink.id).join(Account, Account.id == MailboxLink.account_id)
        .join(FeatureContract, (FeatureContract.account_id == Account.id) & (FeatureContract.feature == EMAIL_FEATURE))
        .where(MailboxLink.state.in_([LinkState.ACTIVE, LinkState.ERROR]), Account.status == AccountStatus.ACTIVE,
               FeatureContract.enabled.is_(True),
               or_(MailboxLink.next_attempt_at.is_(None), MailboxLink.next_attempt_at <= now))
        .order_by(MailboxLink.id)))


def connector(credentials: CredentialsProvider, policy: ConnectionPolicy) -> Callable[[MailboxLink], ImapMailboxClient]:
    """Build the engine's connect function: the link's IMAP settings from the provider, then log in.

    A refused access token (AUTHENTICATIONFAILED at login, or "BYE ... AccessTokenExpired" in the middle of the
    pass) gets one renewal of the credentials and one new login; what fails after that is the pass's failure.
    """
    def connect(link: MailboxLink) -> ImapMailboxClient:
        def login(renew: bool = False):
            return open_imap(credentials.imap_settings(link, renew=renew), policy)

        try:
            client = login()
        except MailboxError as error:
            if error.code not in TOKEN_REFUSED_CODES:
                raise
            client = login(renew=True)
        return ImapMailboxClient(client, relogin=lambda: login(renew=True))
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
            except Exception:  # noqa: BLE001 - a busy database must not end the pass; the next beat retries
                log.exception("could not renew the sync lease of link %s", self.link_id)


def sync_one(scope: SessionScope, link_id: int, connect: Connect, now: Callable[[], datetime], config: EngineConfig,
             after_import: AfterImport = nothing_after_import) -> PassResult:
    """Claim the link's lease for this pass, run it with a heartbeat, release; a held lease means another pass is on it."""
    token = pass_token()
    with scope() as session:
        if not claim_lease(session, link_id, token, now(), config.lease_seconds):
            return PassResult(link_id, skipped=True, error="別の処理が同期中です。")
        try:
            with LeaseHeartbeat(scope, link_id, token, now, config.lease_seconds):
                link = session.get(MailboxLink, link_id)
                return sync_link(session, link, connect, now, config, after_import)
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
