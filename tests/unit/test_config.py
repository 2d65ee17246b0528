"""Settings: generated secrets, database URLs and the password work factor."""
import os
import stat

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from portal import create_app, passwords
from portal.extensions import db
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


@pytest.fixture
def usual_umask():
    """The umask most servers run with (0022: new files 0644, folders 0755)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def portal_in(folder, monkeypatch):
    """An app whose instance folder and SQLite database are in folder, with generated secrets."""
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(folder))
    for name in ("SECRET_KEY", "MAILBOX_ENCRYPTION_KEY", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'portal.db'}"})
    with app.app_context():  # SQLite writes the file and its journal
        db.session.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
        db.session.commit()
        db.engine.dispose()
    return app


def modes(folder) -> dict[str, int]:
    """The permission bits of the folder and of everything in it."""
    return {".": stat.S_IMODE(folder.stat().st_mode),
            **{path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}}


def test_a_new_instance_folder_is_private(tmp_path, monkeypatch, usual_umask):
    """Folder 0700; database and generated secrets 0600, whatever the umask (hole 15)."""
    folder = tmp_path / "instance"
    portal_in(folder, monkeypatch)
    found = modes(folder)
    assert found.pop(".") == 0o700
    assert {"portal.db", "secret_key", "mailbox_key"} <= set(found)
    assert set(found.values()) == {0o600}, found


def test_an_existing_loose_instance_folder_is_tightened_at_start(tmp_path, monkeypatch, usual_umask):
    """An instance folder left 0755 with 0644 files by an earlier version is made private when the portal starts."""
    folder = tmp_path / "instance"
    folder.mkdir(mode=0o755)
    for name in ("portal.db", "portal.db-wal", "secret_key", "mailbox_key"):
        (folder / name).write_bytes(b"" if name.startswith("portal") else b"x" * 44)
        (folder / name).chmod(0o644)
    folder.chmod(0o755)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(folder))
    create_app({"TESTING": True, "SECRET_KEY": "s", "MAILBOX_ENCRYPTION_KEY": "k",
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'portal.db'}"})
    found = modes(folder)
    assert found.pop(".") == 0o700 and set(found.values()) == {0o600}, found
