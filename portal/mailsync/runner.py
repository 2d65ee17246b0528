"""Running passes over many links: which are due, connecting with the provider's credentials, a bounded pool, leases."""
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Callable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from portal.mailsync.client import ImapMailboxClient
from portal.mailsync.connection import ConnectionPolicy
from portal.mailsync.credentials import CredentialsProvider
from portal.mailsync.engine import (AfterImport, EngineConfig, MailboxClient, PassResult, claim_lease,
                                    nothing_after_import, release_lease, sync_link)
from portal.models import EMAIL_FEATURE, Account, AccountStatus, FeatureContract, LinkState, MailboxLink

SessionScope = Callable[[], AbstractContextManager[Session]]
Connect = Callable[[MailboxLink], MailboxClient]


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
    """Build the engine's connect function: the link's IMAP settings from the provider, then log in."""
    def connect(link: MailboxLink) -> ImapMailboxClient:
        return ImapMailboxClient.connect(credentials.imap_settings(link), policy)
    return connect


def lease_owner() -> str:
    """A name for this process, so a lease shows who holds it."""
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


def sync_one(scope: SessionScope, link_id: int, connect: Connect, now: Callable[[], datetime], config: EngineConfig,
             owner: str, lease_seconds: int = 900, after_import: AfterImport = nothing_after_import) -> PassResult:
    """Claim the link's lease, run a pass, release; a held lease means another process is on it."""
    with scope() as session:
        if not claim_lease(session, link_id, owner, now(), lease_seconds):
            return PassResult(link_id, skipped=True, error="別の処理が同期中です。")
        try:
            link = session.get(MailboxLink, link_id)
            return sync_link(session, link, connect, now, config, after_import)
        finally:
            session.rollback()
            release_lease(session, link_id, owner)


def sync_many(scope: SessionScope, link_ids: list[int], connect: Connect, now: Callable[[], datetime],
              config: EngineConfig, workers: int = 4, after_import: AfterImport = nothing_after_import
              ) -> list[PassResult]:
    """Sync links concurrently with a bounded pool, so one slow server does not hold up the rest."""
    owner = lease_owner()
    if not link_ids:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(link_ids)))) as pool:
        return list(pool.map(lambda link_id: sync_one(scope, link_id, connect, now, config, owner,
                                                      after_import=after_import), link_ids))
