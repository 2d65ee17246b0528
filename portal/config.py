"""Settings read from the environment and, for generated secrets, the instance folder."""
import logging
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# The instance folder holds the database, mailbox secrets and signing keys: only the portal's own user reads them.
PRIVATE_FOLDER_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
GENERATED_SECRETS = ("secret_key", "mailbox_key")
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

MAX_REQUEST_BYTES = 2 * 1024 * 1024


def normalise_database_url(url: str) -> str:
    """Point plain postgresql:// URLs at the psycopg 3 driver the portal ships with."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _tighten(path: Path, mode: int) -> None:
    """Take group and other permissions away from a file or folder made looser by an earlier version or by hand."""
    try:
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(mode)
    except OSError as error:  # another user's file: say so, but the portal can still run
        log.warning("could not restrict the permissions of %s: %s", path, error)


def sqlite_file(database_uri: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory SQLite)."""
    url = make_url(database_uri)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:" \
            or url.database.startswith("file:"):
        return None
    return Path(url.database)


def secure_instance_folder(instance_path: str) -> None:
    """Create the instance folder 0700 (whatever the umask), and tighten an existing one."""
    folder = Path(instance_path)
    folder.mkdir(mode=PRIVATE_FOLDER_MODE, parents=True, exist_ok=True)
    _tighten(folder, PRIVATE_FOLDER_MODE)


def secure_instance_files(instance_path: str, database_uri: str) -> None:
    """Secrets and the SQLite database (with its journal files) 0600: created so, and tightened when older."""
    for name in GENERATED_SECRETS:
        _tighten(Path(instance_path) / name, PRIVATE_FILE_MODE)
    database = sqlite_file(database_uri)
    if database is None:
        return
    try:  # SQLite would create the file with the umask's 0644; it keeps this mode for its journal files
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
    except OSError as error:
        log.warning("could not create %s with private permissions: %s", database, error)
    for path in [database] + [database.with_name(database.name + side) for side in SQLITE_SIDE_FILES]:
        _tighten(path, PRIVATE_FILE_MODE)


def read_or_create_secret(instance_path: str, filename: str, generate) -> str:
    """Return the secret stored in the instance folder, creating it with 0600 permissions once."""
    path = Path(instance_path) / filename
    path.parent.mkdir(mode=PRIVATE_FOLDER_MODE, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(generate())
    return path.read_text().strip()


def load_settings(instance_path: str, environ=os.environ) -> dict:
    """Build the Flask config mapping from the environment with safe defaults."""
    default_db = "sqlite:///" + str(Path(instance_path) / "portal.db")
    return {
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(environ.get("DATABASE_URL", default_db)),
        # A failed statement's error (and so the log) never carries its values: password hashes, mail text.
        "SQLALCHEMY_ENGINE_OPTIONS": {"hide_parameters": True},
        # The largest request body, and the largest form held in memory: a 100,000-character Japanese mail body
        # is about 900 KB once form-encoded (Werkzeug's own form default of 500 KB would refuse it).
        "MAX_CONTENT_LENGTH": MAX_REQUEST_BYTES,
        "MAX_FORM_MEMORY_SIZE": MAX_REQUEST_BYTES,
        "SECRET_KEY": environ.get("SECRET_KEY")
        or read_or_create_secret(instance_path, "secret_key", lambda: secrets.token_urlsafe(48)),
        "MAILBOX_ENCRYPTION_KEY": environ.get("MAILBOX_ENCRYPTION_KEY")
        or read_or_create_secret(instance_path, "mailbox_key", lambda: Fernet.generate_key().decode()),
        "MAILBOX_ENCRYPTION_OLD_KEYS": [k for k in environ.get("MAILBOX_ENCRYPTION_OLD_KEYS", "").split(",") if k],
        "MAIL_ALLOW_PLAINTEXT": environ.get("MAIL_ALLOW_PLAINTEXT") == "1",
        "MAIL_CA_FILE": environ.get("MAIL_CA_FILE") or None,
        "MAIL_EXTRA_PORTS": [int(p) for p in environ.get("MAIL_EXTRA_PORTS", "").split(",") if p.strip()],
        "MAIL_TIMEOUT_SECONDS": float(environ.get("MAIL_TIMEOUT_SECONDS", "15")),
        # Link checks, 再認証 and the OAuth2 sign-in answer a waiting member: a dead host fails fast.
        "MAIL_CHECK_TIMEOUT_SECONDS": float(environ.get("MAIL_CHECK_TIMEOUT_SECONDS", "8")),
        # Link checks, 再認証 and 今すぐ同期 running at once (one per member), in a pool apart from the web threads:
        # keep it below the web server's threads (waitress: 4) so sign-in never waits behind a dead mail host.
        "MAIL_CHECK_WORKERS": int(environ.get("MAIL_CHECK_WORKERS", "2")),
        # Loopback, link-local and unspecified addresses are refused unless opened here (CIDRs, comma-separated).
        "MAIL_ALLOWED_NETWORKS": environ.get("MAIL_ALLOWED_NETWORKS", ""),
        # Link and re-authentication attempts per member (each logs in to a mail server with what was typed).
        "MAIL_LINK_RATE_LIMIT": environ.get("MAIL_LINK_RATE_LIMIT", "10 per 10 minutes;40 per day"),
        # Off (0): this web process runs no background jobs; `flask --app wsgi worker` processes run them.
        "SCHEDULER_ENABLED": environ.get("SCHEDULER_ENABLED", "1") != "0",
        "SYNC_INTERVAL_SECONDS": int(environ.get("SYNC_INTERVAL_SECONDS", "180")),
        "SYNC_WORKERS": int(environ.get("SYNC_WORKERS", "4")),
        # Due links a sync thread claims at a time: small, so that several worker processes share the links.
        "SYNC_CLAIM_BATCH": int(environ.get("SYNC_CLAIM_BATCH", "5")),
        # IMAP connections a process keeps open between passes (idle and in use); an idle mailbox then costs no login.
        "SYNC_MAX_CONNECTIONS": int(environ.get("SYNC_MAX_CONNECTIONS", "200")),
        "SYNC_BATCH_SIZE": int(environ.get("SYNC_BATCH_SIZE", "200")),
        "SYNC_BATCH_BYTES": int(environ.get("SYNC_BATCH_BYTES", str(32 * 1024 * 1024))),
        # A pass holds its link's lease this long and renews it every third; a killed pass frees it after this.
        "SYNC_LEASE_SECONDS": int(environ.get("SYNC_LEASE_SECONDS", "60")),
        # An HTML body longer than this (characters) is shown as its text part: sanitising 10 MB took 9 s.
        "MAIL_HTML_VIEW_CAP": int(environ.get("MAIL_HTML_VIEW_CAP", str(2_000_000))),
        "MAIL_SIZE_CAP_BYTES": int(environ.get("MAIL_SIZE_CAP_BYTES", str(25 * 1024 * 1024))),
        # The files of one reply or new mail together; base64 makes them a third larger on the wire.
        "MAIL_ATTACHMENTS_MAX_BYTES": int(environ.get("MAIL_ATTACHMENTS_MAX_BYTES", str(10 * 1024 * 1024))),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": environ.get("SESSION_COOKIE_SECURE") == "1",
        "LOGIN_SESSION_HOURS": int(environ.get("LOGIN_SESSION_HOURS", "12")),
        "LOGIN_RATE_LIMIT": environ.get("LOGIN_RATE_LIMIT", "5 per minute;20 per hour"),
        # Failed sign-ins per sign-in address, whichever client they come from (guessing from many addresses).
        "LOGIN_EMAIL_RATE_LIMIT": environ.get("LOGIN_EMAIL_RATE_LIMIT", "10 per hour"),
        # Reverse proxies in front of the portal whose X-Forwarded-For/-Proto are trusted (0: none, the default).
        "TRUSTED_PROXY_COUNT": int(environ.get("TRUSTED_PROXY_COUNT", "0")),
        "PASSWORD_RESET_HOURS": int(environ.get("PASSWORD_RESET_HOURS", "24")),
        "INVITATION_DAYS": int(environ.get("INVITATION_DAYS", "7")),
        "RATELIMIT_STORAGE_URI": environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        # argon2id defaults of argon2-cffi (t=3, m=64 MiB, p=4): the RFC 9106 "second choice".
        "ARGON2_TIME_COST": int(environ.get("ARGON2_TIME_COST", "3")),
        "ARGON2_MEMORY_COST": int(environ.get("ARGON2_MEMORY_COST", "65536")),
        "PER_PAGE": 20,
        # The mail list counts at most this many rows past the page (then shows 「10,000件以上」).
        "MAIL_LIST_COUNT_CAP": 10_000,
        # Overrides of portal.mails.services.SearchLimits (how far a text search may read), e.g. in tests.
        "SEARCH_LIMITS": {},
        # The address customers' mail clients reach the portal at; without it sent mail carries no tracking.
        "PUBLIC_BASE_URL": environ.get("PUBLIC_BASE_URL", "").strip().rstrip("/") or None,
        # One counted open (or click of a link) per client in this time, however often the image is fetched.
        "TRACKING_COUNT_WINDOW_SECONDS": int(environ.get("TRACKING_COUNT_WINDOW_SECONDS", "300")),
        "AUTOMATION_INTERVAL_SECONDS": int(environ.get("AUTOMATION_INTERVAL_SECONDS", "60")),
        # Installation-wide OAuth2 apps, used by presets that leave their client fields empty.
        **{name: environ.get(name, "").strip() for name in (
            "OAUTH_MICROSOFT_CLIENT_ID", "OAUTH_MICROSOFT_CLIENT_SECRET", "OAUTH_MICROSOFT_TENANT",
            "OAUTH_GOOGLE_CLIENT_ID", "OAUTH_GOOGLE_CLIENT_SECRET")},
    }
