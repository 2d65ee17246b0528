"""Fixtures: a migrated database (SQLite or PostgreSQL via TEST_DATABASE_URL), app, client, login helper."""
import os
import tempfile
import uuid

import psycopg
import pytest
from sqlalchemy import make_url

# Every app the tests build keeps its generated secrets here, not in the repository's instance/.
os.environ.setdefault("PORTAL_INSTANCE_PATH", tempfile.mkdtemp(prefix="portal-test-instance-"))

from portal import create_app
from portal.config import normalise_database_url
from portal.extensions import db, limiter
from tests.factories import LOOPBACK_NETWORKS, PASSWORD, TEST_KEY

# The mail-server fixtures serve the integration and browser tests alike.
pytest_plugins = ["tests.integration.fixtures"]

FAST_HASHING = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024}


def base_config(database_url: str, **overrides) -> dict:
    """Test settings: fast password hashing, generous login limit, CSRF off unless asked."""
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "WTF_CSRF_ENABLED": False,
              "LOGIN_RATE_LIMIT": "1000 per minute", "SERVER_NAME": None, "MAILBOX_ENCRYPTION_KEY": TEST_KEY,
              "MAIL_ALLOWED_NETWORKS": LOOPBACK_NETWORKS, **FAST_HASHING}
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    """A fresh database for this test run, with the schema built by the real migrations."""
    server_url = os.environ.get("TEST_DATABASE_URL")
    if server_url:
        yield from fresh_postgresql_database(server_url)
        return
    test_url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "portal.db")
    migrate_database(test_url)
    yield test_url


def fresh_postgresql_database(server_url: str):
    """Create and migrate a uniquely named database on the server, yield its URL, drop it afterwards."""
    url = make_url(normalise_database_url(server_url))
    name = f"portal_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    test_url = url.set(database=name).render_as_string(hide_password=False)
    try:
        migrate_database(test_url)
        yield test_url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgresql_url(database_url):
    """A PostgreSQL database for what only PostgreSQL has (row locks): the suite's own on PostgreSQL, else one on
    the server TEST_POSTGRES_URL names (scripts/test.sh passes it), so these tests run, not skip, on SQLite too."""
    if database_url.startswith("postgresql"):
        yield database_url
        return
    yield from fresh_postgresql_database(os.environ.get("TEST_POSTGRES_URL",
                                                        "postgresql://postgres@127.0.0.1:5432/test"))


def migrate_database(url: str) -> None:
    """Run `flask db upgrade` on the database."""
    from flask_migrate import upgrade
    app = create_app(base_config(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


def clear_tables() -> None:
    """Delete every row, children first, so each test starts empty."""
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


@pytest.fixture
def make_app(database_url):
    """Build apps on the test database; rows and rate-limit counters are cleared afterwards."""
    yield from app_builder(database_url)


@pytest.fixture
def postgresql_app(postgresql_url):
    """Like `app`, on PostgreSQL whichever database the suite runs on."""
    builder = app_builder(postgresql_url)
    build = next(builder)
    with build().app_context():
        yield build()
    next(builder, None)


def app_builder(database_url: str):
    """Yield a builder of apps on the database; afterwards clear its rows, engines and rate-limit counters."""
    apps = []

    def build(**overrides):
        app = create_app(base_config(database_url, **overrides))
        apps.append(app)
        return app

    yield build
    if apps:
        with apps[0].app_context():
            db.session.remove()
            clear_tables()
    for built in apps:
        with built.app_context():
            db.engine.dispose()
    limiter.reset()


@pytest.fixture
def app(make_app):
    """The app under test; test code gets its own app context on a twin app for the factories.

    Requests then run in their own app context (fresh `g` and session) exactly as in production,
    instead of sharing the test's context.
    """
    data_app = make_app()
    with data_app.app_context():
        yield make_app()


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


class AuthActions:
    """Sign in and out through the real login form."""

    def __init__(self, client):
        self.client = client

    def login(self, email: str, password: str = PASSWORD, follow_redirects: bool = False):
        """POST the login form."""
        return self.client.post("/login", data={"email": email, "password": password},
                                follow_redirects=follow_redirects)

    def login_member(self, membership):
        """Sign in as a member and work in that member's account."""
        response = self.login(membership.user.email)
        assert response.status_code == 302, response.status_code
        if "/accounts/select" in response.headers["Location"]:
            self.client.post("/accounts/select", data={"membership_id": membership.id})
        return response

    def logout(self):
        """POST the logout form."""
        return self.client.post("/logout")


@pytest.fixture
def auth(client):
    """Login helper bound to the test client."""
    return AuthActions(client)
