"""Unbound Flask extensions, bound to the app in create_app."""
import sqlite3

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine

from portal.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, storage_uri="memory://")


@event.listens_for(Engine, "connect")
def _sqlite_write_ahead_log(dbapi_connection, connection_record) -> None:
    """SQLite in WAL mode: a commit appends to the log with one fsync instead of rewriting a rollback journal (the
    sync passes commit three times per mailbox), and readers no longer wait for a writer."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()
