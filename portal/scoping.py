"""The one account-scoping helper: every query of an account's rows goes through it, in services and routes alike.

Another account's row must behave exactly like a row that does not exist, so nobody writes
`Model.account_id == ...` by hand (forgetting it once is a leak).
"""
from typing import TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

Row = TypeVar("Row")


def for_account(statement: Select, account_id: int, model=None) -> Select:
    """The statement limited to one account's rows of `model` (by default the statement's first entity).

    Name the model when the statement selects columns or aggregates of another table, or when a join makes the
    scoped table a different one from the first entity: `for_account(select(MailMessage).join(...), id, Customer)`.
    """
    if model is None:
        model = statement.column_descriptions[0].get("entity")
        if model is None:
            raise TypeError("for_account needs the model when the statement selects no mapped entity")
    return statement.where(model.account_id == account_id)


def get_in_account(session: Session, model: type[Row], object_id: int, account_id: int, *criteria) -> Row | None:
    """One row of the account by id (and any further criteria), or None: another account's id does not exist."""
    return session.scalar(for_account(select(model), account_id).where(model.id == object_id, *criteria))
