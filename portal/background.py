"""Background work as the scheduler runs it: a session per unit of work, the mail import and the automation steps.

scheduler.py builds the jobs from these functions (and is the only place that does); the CLI `sync`, 「今すぐ同期」
and the benchmarks call the same functions, so a pass run by hand is wired exactly like a scheduled one. This is
also where the import engine gets what it must not import itself: the credentials provider and the after-import hook.
"""
import threading
from contextlib import contextmanager
from datetime import datetime
from typing import Mapping

from flask import Flask
from sqlalchemy.orm import Session

from portal.auth.services import purge_expired_sessions
from portal.automations.runner import send_due_steps
from portal.automations.services import stop_on_customer_reply
from portal.extensions import db
from portal.mailbox.credentials import link_credentials
from portal.mailbox.services import connection_policy
from portal.mails.sending import send_environment
from portal.mailsync.engine import EngineConfig, PassResult
from portal.mailsync.pool import ImapConnectionPool
from portal.mailsync.runner import Connect, SessionScope, connector, sync_due, sync_many
from portal.models import MailMessage, utcnow


def session_scope(app: Flask) -> SessionScope:
    """A factory of sessions for background work: each use gets its own app context and session."""
    @contextmanager
    def scope():
        with app.app_context():
            try:
                yield db.session
            finally:
                db.session.remove()
    return scope


def engine_config(config: Mapping) -> EngineConfig:
    """Engine tunables from the app settings."""
    return EngineConfig(size_cap=config["MAIL_SIZE_CAP_BYTES"], batch_size=config["SYNC_BATCH_SIZE"],
                        batch_bytes=config["SYNC_BATCH_BYTES"], lease_seconds=config["SYNC_LEASE_SECONDS"])


def connection_pool(app: Flask) -> ImapConnectionPool:
    """The app's IMAP connections kept between passes (one pool per process and app, SYNC_MAX_CONNECTIONS)."""
    with _POOL_LOCK:
        return app.extensions.setdefault("imap_connection_pool",
                                         ImapConnectionPool(app.config["SYNC_MAX_CONNECTIONS"]))


_POOL_LOCK = threading.Lock()


def mailbox_connector(config: Mapping, pool: ImapConnectionPool | None = None) -> Connect:
    """The engine's connect function: the production credentials provider and the operator's connection rules."""
    return connector(link_credentials(config), connection_policy(config), pool)


def on_mail_imported(session: Session, messages: list[MailMessage], now: datetime) -> None:
    """The engine's after-import hook: a customer's reply stops their automations, in the import's transaction."""
    stop_on_customer_reply(session, messages, now)


def run_sync(app: Flask, link_ids: list[int] | None = None, skip_synced_within: float = 0) -> list[PassResult]:
    """One pass over the given links, each in its own session; by default over every due link, claimed in small
    batches so that several worker processes share them."""
    scope = session_scope(app)
    if link_ids is None:
        pool = connection_pool(app)
        return sync_due(scope, mailbox_connector(app.config, pool=pool), utcnow, engine_config(app.config),
                        workers=app.config["SYNC_WORKERS"], claim_batch=app.config["SYNC_CLAIM_BATCH"],
                        after_import=on_mail_imported, pool=pool, skip_synced_within=skip_synced_within)
    return sync_many(scope, link_ids, mailbox_connector(app.config, pool=connection_pool(app)), utcnow,
                     engine_config(app.config),
                     workers=app.config["SYNC_WORKERS"], after_import=on_mail_imported)


def run_automation_steps(app: Flask) -> int:
    """Send every due sales automation step; returns how many mails went out."""
    with session_scope(app)() as session:
        return send_due_steps(session, utcnow(), send_environment(app.config))


def run_session_purge(app: Flask) -> int:
    """Delete expired login sessions; returns how many."""
    with session_scope(app)() as session:
        return purge_expired_sessions(session, utcnow())
