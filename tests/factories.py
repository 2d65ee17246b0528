"""Test data builders that go through the real services."""
from itertools import count

from portal.customers.services import CustomerData, create_customer
from portal.extensions import db
from portal.models import Account, Customer, Membership, MembershipState, Role
from portal.settings.services import create_account
from portal.users.services import add_member

PASSWORD = "correct-horse-battery"
_serial = count(1)


def make_account(name: str | None = None) -> tuple[Account, Membership]:
    """An account with its owner; returns (account, owner membership)."""
    number = next(_serial)
    account = create_account(db.session, name or f"会社{number}", f"owner{number}@example.jp", PASSWORD,
                             f"オーナー{number}")
    owner = db.session.query(Membership).filter_by(account_id=account.id, role=Role.OWNER).one()
    return account, owner


def make_member(account: Account, role: Role, email: str | None = None,
                state: MembershipState = MembershipState.ACTIVE) -> Membership:
    """A member of the account with the given role and state."""
    number = next(_serial)
    membership, _ = add_member(db.session, account, None, email or f"{role.value}{number}@example.jp",
                               f"{role.value}さん{number}", role, PASSWORD)
    if state != MembershipState.ACTIVE:
        membership.state = state
        db.session.commit()
    return membership


def make_customer(account: Account, name: str | None = None, email: str | None = None,
                  assigned: Membership | None = None, company: str = "") -> Customer:
    """A customer of the account."""
    number = next(_serial)
    return create_customer(db.session, account, None, CustomerData(
        name=name or f"顧客{number}", email=email or f"customer{number}@client.example",
        company=company, assigned_membership_id=assigned.id if assigned else None))
