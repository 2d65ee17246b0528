"""Settings: generated secrets, database URLs and the password work factor."""
import stat

from argon2 import PasswordHasher

from portal import passwords
from portal.config import load_settings, normalise_database_url


def test_secrets_are_generated_once_with_private_permissions(tmp_path):
    """First run writes 0600 secret files; later runs read the same values back."""
    first = load_settings(str(tmp_path), environ={})
    second = load_settings(str(tmp_path), environ={})
    for name in ("secret_key", "mailbox_key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(first["SECRET_KEY"]) >= 40
    assert first["MAILBOX_ENCRYPTION_KEY"] == second["MAILBOX_ENCRYPTION_KEY"]


def test_environment_secrets_win_and_nothing_is_written(tmp_path):
    """Secrets given in the environment are used as they are."""
    settings = load_settings(str(tmp_path), environ={"SECRET_KEY": "from-env", "MAILBOX_ENCRYPTION_KEY": "k"})
    assert settings["SECRET_KEY"] == "from-env"
    assert not (tmp_path / "secret_key").exists()


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path):
    """Without DATABASE_URL the embedded SQLite file lives in the instance folder."""
    assert load_settings(str(tmp_path), environ={})["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/portal.db"


def test_postgresql_urls_use_psycopg3():
    """The URL operators paste (postgresql:// or postgres://) works with the shipped driver."""
    assert normalise_database_url("postgresql://postgres@127.0.0.1:5432/test") == \
        "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert normalise_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_default_work_factor_is_argon2id_64mib(tmp_path):
    """Production hashes are argon2id with t=3 and 64 MiB, and they verify."""
    settings = load_settings(str(tmp_path), environ={})
    passwords.configure(settings["ARGON2_TIME_COST"], settings["ARGON2_MEMORY_COST"])
    try:
        hashed = passwords.hash_password("パスワード123")
        assert hashed.startswith("$argon2id$") and "m=65536,t=3" in hashed
        assert passwords.verify_password(hashed, "パスワード123")
        assert not passwords.verify_password(hashed, "パスワード124")
        assert not passwords.verify_password("not-a-hash", "x")
    finally:
        passwords.configure(1, 1024)
    assert PasswordHasher().check_needs_rehash(hashed) is False


def test_tracking_is_off_until_the_public_address_is_set(tmp_path):
    """Without PUBLIC_BASE_URL sent mail is untracked; a set one loses its trailing slash."""
    assert load_settings(str(tmp_path), environ={})["PUBLIC_BASE_URL"] is None
    configured = load_settings(str(tmp_path), environ={"PUBLIC_BASE_URL": "https://crm.example.jp/"})
    assert configured["PUBLIC_BASE_URL"] == "https://crm.example.jp"
