"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from portal.extensions import db
from portal.models.mail import is_search_index_object


def test_migrated_schema_matches_models(app):
    """Alembic finds nothing to add, drop or change after `db upgrade`."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "include_object": lambda obj, name, *_: not is_search_index_object(name)})
        assert compare_metadata(context, db.metadata) == []


def test_live_customer_email_index_is_partial(app):
    """The per-account email uniqueness only covers customers that are not deleted."""
    indexes = {index["name"]: index for index in inspect(db.engine).get_indexes("customers")}
    live = indexes["uq_customers_account_email_live"]
    assert live["unique"] and live["column_names"] == ["account_id", "email"]
