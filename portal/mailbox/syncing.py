"""Glue between the app's settings and the import engine, shared by the scheduler, the CLI and 「今すぐ同期」."""
from contextlib import contextmanager

from flask import Flask

from portal.extensions import db
from portal.mailbox.services import connection_policy, secret_box
from portal.mailsync.engine import EngineConfig, PassResult
from portal.mailsync.runner import connector, due_link_ids, sync_many
from portal.models import utcnow


def engine_config(config) -> EngineConfig:
    """Engine tunables from the app settings."""
    return EngineConfig(size_cap=config["MAIL_SIZE_CAP_BYTES"], batch_size=config["SYNC_BATCH_SIZE"])


def session_scope(app: Flask):
    """A factory of sessions for background work: each use gets its own app context and session."""
    @contextmanager
    def scope():
        with app.app_context():
            try:
                yield db.session
            finally:
                db.session.remove()
    return scope


def run_sync(app: Flask, link_ids: list[int] | None = None) -> list[PassResult]:
    """One pass over the given links (default: every link that is due), each in its own session."""
    scope = session_scope(app)
    if link_ids is None:
        with scope() as session:
            link_ids = due_link_ids(session, utcnow())
    connect = connector(secret_box(app.config), connection_policy(app.config))
    return sync_many(scope, link_ids, connect, utcnow, engine_config(app.config),
                     workers=app.config["SYNC_WORKERS"])
