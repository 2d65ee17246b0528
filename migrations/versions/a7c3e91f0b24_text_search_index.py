"""text search index: FTS5 trigram on SQLite, pg_trgm GIN on PostgreSQL

The index covers a message's subject and its body (the text part, else the HTML part), the same text
`portal/mails/search.py` searches. It is kept in step by the database itself (SQLite triggers, a PostgreSQL
index), so bulk inserts, deletes and edits that bypass the ORM are followed too.

SQLite: `mail_search` is a contentless FTS5 table; its rowid is `mail_messages.id`. A contentless table
forgets the text it indexed, so removing a row needs the old values: the delete and update triggers pass
them. A later batch migration that recreates `mail_messages` on SQLite drops these triggers with the old
table and must create them again (the search tests fail if it does not).

PostgreSQL: needs the pg_trgm extension. It is a trusted extension (PostgreSQL 13+): the database owner,
or any role with CREATE on the database, may create it; otherwise a superuser runs
`CREATE EXTENSION pg_trgm;` in the portal's database once before `flask db upgrade`.

Revision ID: a7c3e91f0b24
Revises: f59de9a0c547
Create Date: 2026-11-28 10:00:00

"""
import logging
import sqlite3

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c3e91f0b24'
down_revision = 'f59de9a0c547'
branch_labels = None
depends_on = None

# The body a search reads: the text part, or the HTML part of a message without one.
SQLITE_BODY = "coalesce(nullif({row}.text_body, ''), {row}.html_body)"
SQLITE_TRIGGERS = {
    "mail_messages_search_insert": """
        CREATE TRIGGER mail_messages_search_insert AFTER INSERT ON mail_messages BEGIN
            INSERT INTO mail_search (rowid, subject, body) VALUES (new.id, new.subject, {new_body});
        END""",
    "mail_messages_search_delete": """
        CREATE TRIGGER mail_messages_search_delete AFTER DELETE ON mail_messages BEGIN
            INSERT INTO mail_search (mail_search, rowid, subject, body)
            VALUES ('delete', old.id, old.subject, {old_body});
        END""",
    "mail_messages_search_update": """
        CREATE TRIGGER mail_messages_search_update AFTER UPDATE OF id, subject, text_body, html_body
        ON mail_messages BEGIN
            INSERT INTO mail_search (mail_search, rowid, subject, body)
            VALUES ('delete', old.id, old.subject, {old_body});
            INSERT INTO mail_search (rowid, subject, body) VALUES (new.id, new.subject, {new_body});
        END""",
}
POSTGRES_BODY = "(coalesce(nullif(text_body, ''), html_body))"


def upgrade():
    """Build the index for the database in use and fill it from the stored messages."""
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def downgrade():
    """Drop the index (the pg_trgm extension stays: other objects may use it)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_mail_messages_body_trgm")
        op.execute("DROP INDEX IF EXISTS ix_mail_messages_subject_trgm")
        return
    for name in SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS mail_search")


def _upgrade_sqlite():
    """A contentless FTS5 trigram table, triggers that follow every insert, delete and edit, then a fill."""
    if sqlite3.sqlite_version_info < (3, 34, 0):
        raise RuntimeError(f"全文検索には SQLite 3.34 以上が必要です（この環境は {sqlite3.sqlite_version}）。")
    # detail=full keeps positions, which a trigram phrase needs; columnsize=0 drops the per-row sizes only
    # ranking would use (results are newest first, never ranked).
    op.execute("CREATE VIRTUAL TABLE mail_search USING fts5(subject, body, content='', columnsize=0, "
               "tokenize='trigram')")
    bodies = {"new_body": SQLITE_BODY.format(row="new"), "old_body": SQLITE_BODY.format(row="old")}
    for statement in SQLITE_TRIGGERS.values():
        op.execute(statement.format(**bodies))
    op.execute("INSERT INTO mail_search (rowid, subject, body) "
               f"SELECT id, subject, {SQLITE_BODY.format(row='mail_messages')} FROM mail_messages")


def _upgrade_postgresql():
    """pg_trgm (created here when the role may), then a GIN trigram index on the subject and on the body."""
    bind = op.get_bind()
    installed = bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).scalar()
    if not installed:
        available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).scalar()
        if not available:
            raise RuntimeError("PostgreSQL の拡張機能 pg_trgm がサーバーにありません。PostgreSQL の contrib "
                               "パッケージ（例: postgresql-contrib）を導入してから再実行してください。")
        try:
            bind.execute(sa.text("CREATE EXTENSION pg_trgm"))
        except sa.exc.ProgrammingError as error:
            raise RuntimeError("pg_trgm 拡張機能を作成する権限がありません。データベースの所有者かスーパーユーザーで "
                               "CREATE EXTENSION pg_trgm; を実行してから再実行してください。") from error
    # A database created with LC_CTYPE=C gives Japanese text no trigrams: searches would still be right,
    # but would read every message. Say so now rather than let it be found in production.
    if not bind.execute(sa.text("SELECT array_length(show_trgm('日本語'), 1)")).scalar():
        logging.getLogger("alembic.runtime.migration").warning("This database's LC_CTYPE is C: pg_trgm cannot index Japanese, so text search will read "
                      "every message. Create the database with a UTF-8 locale (e.g. C.UTF-8 or ja_JP.UTF-8).")
    op.execute("CREATE INDEX ix_mail_messages_subject_trgm ON mail_messages USING gin (subject gin_trgm_ops)")
    op.execute(f"CREATE INDEX ix_mail_messages_body_trgm ON mail_messages USING gin ({POSTGRES_BODY} gin_trgm_ops)")
