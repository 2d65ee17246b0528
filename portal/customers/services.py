"""Customer use cases: create, edit, delete, search and who may open whom."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, false, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal import audit
from portal.auth.services import normalise_email
from portal.models import Account, Customer, LinkState, MailboxLink, Membership, MembershipState, User
from portal.policy import Action, can
from portal.scoping import for_account, get_in_account


class DuplicateCustomerEmail(Exception):
    """Another live customer of the account already has this email address."""


class InvalidAssignee(Exception):
    """The chosen 担当者 is not an active member of the account."""


class AssignToOthersDenied(Exception):
    """A plain user tried to make another member the 担当者 (only managers and above may)."""


@dataclass
class CustomerData:
    """The editable fields of a customer."""

    name: str
    email: str
    company: str = ""
    assigned_membership_id: int | None = None


def assignable_members(session: Session, account_id: int) -> list[Membership]:
    """Active members of the account who can be a customer's 担当者."""
    return list(session.scalars(
        for_account(select(Membership), account_id).where(Membership.state == MembershipState.ACTIVE)
        .join(Membership.user).order_by(Membership.id)))


def assignees_for(session: Session, actor: Membership) -> list[Membership]:
    """The members the actor may choose as 担当者: anyone active for managers and above, else only themselves."""
    if can(actor.role, Action.ASSIGN_TO_OTHERS):
        return assignable_members(session, actor.account_id)
    return [actor] if actor.state == MembershipState.ACTIVE else []


def member_domains(session: Session, account_id: int) -> set[str]:
    """Domains of the account's members (sign-in and linked mailbox addresses)."""
    emails = set(session.scalars(for_account(select(User.email).join(Membership, Membership.user_id == User.id),
                                             account_id, Membership)
                                 .where(Membership.state != MembershipState.DELETED)))
    emails |= set(session.scalars(for_account(select(MailboxLink.email), account_id)
                                  .where(MailboxLink.state != LinkState.UNLINKED)))
    return {email.rsplit("@", 1)[-1] for email in emails if "@" in email}


def may_open(viewer: Membership, customer: Customer) -> bool:
    """True unless 担当者閲覧制限 hides this customer from the viewer."""
    if not viewer.account.viewing_restricted or can(viewer.role, Action.VIEW_ALL_CUSTOMERS):
        return True
    return customer.assigned_membership_id == viewer.id


LONGEST_SEARCHED_FIELD = 254  # an email address; names and companies stop at 200


def visible_customers(viewer: Membership, query: str = "") -> Select:
    """Live customers the viewer may see, newest first, optionally filtered by a search text."""
    stmt = for_account(select(Customer), viewer.account_id).where(Customer.deleted_at.is_(None))
    if viewer.account.viewing_restricted and not can(viewer.role, Action.VIEW_ALL_CUSTOMERS):
        stmt = stmt.where(Customer.assigned_membership_id == viewer.id)
    query = query.strip()
    if len(query) > LONGEST_SEARCHED_FIELD:
        # No name, company or address holds a longer text (and SQLite refuses LIKE patterns past 50,000 bytes).
        return stmt.where(false())
    if query:
        pattern = "%" + escape_like(query) + "%"
        stmt = stmt.where(or_(Customer.name.ilike(pattern, escape="\\"),
                              Customer.company.ilike(pattern, escape="\\"),
                              Customer.email.ilike(pattern, escape="\\")))
    return stmt.order_by(Customer.created_at.desc(), Customer.id.desc())


def escape_like(text: str) -> str:
    """Escape LIKE wildcards so a search for "100%" finds that text literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _check(session: Session, account: Account, actor: Membership | None, data: CustomerData,
           exclude_id: int | None = None, current_assignee_id: int | None = None) -> str:
    """Validate assignee (a new one must be active) and uniqueness; returns the normalised email."""
    email = normalise_email(data.email)
    new_assignee = data.assigned_membership_id
    # The 担当者's mailbox sends the customer's automation mail, so only managers and above pick someone else.
    if actor is not None and new_assignee not in (None, current_assignee_id, actor.id) \
            and not can(actor.role, Action.ASSIGN_TO_OTHERS):
        raise AssignToOthersDenied()
    if data.assigned_membership_id is not None and data.assigned_membership_id != current_assignee_id:
        assignee = get_in_account(session, Membership, data.assigned_membership_id, account.id)
        if assignee is None or assignee.state != MembershipState.ACTIVE:
            raise InvalidAssignee()
    clash = for_account(select(Customer.id), account.id).where(Customer.email == email,
                                                               Customer.deleted_at.is_(None))
    if exclude_id is not None:
        clash = clash.where(Customer.id != exclude_id)
    if session.scalar(clash) is not None:
        raise DuplicateCustomerEmail()
    return email


def _commit_or_duplicate(session: Session) -> None:
    """Commit; a unique-index race with a concurrent save is reported as a duplicate."""
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise DuplicateCustomerEmail() from error


def create_customer(session: Session, actor: Membership | None, data: CustomerData,
                    account: Account | None = None) -> Customer:
    """Register a customer in the actor's account (actor None: the operator's tools, which name the account)."""
    account = account or actor.account
    email = _check(session, account, actor, data)
    customer = Customer(account_id=account.id, name=data.name.strip(), company=(data.company or "").strip(),
                        email=email, assigned_membership_id=data.assigned_membership_id)
    session.add(customer)
    session.flush()
    audit.record(session, account.id, actor.user_id if actor else None, "customer.create", "customer", customer.id,
                 name=customer.name, email=email)
    _commit_or_duplicate(session)
    return customer


def update_customer(session: Session, actor: Membership | None, customer: Customer, data: CustomerData) -> Customer:
    """Change a customer's fields."""
    email = _check(session, customer.account, actor, data, exclude_id=customer.id,
                   current_assignee_id=customer.assigned_membership_id)
    before = {"name": customer.name, "email": customer.email, "company": customer.company,
              "assigned_membership_id": customer.assigned_membership_id}
    customer.name = data.name.strip()
    customer.company = (data.company or "").strip()
    customer.email = email
    customer.assigned_membership_id = data.assigned_membership_id
    after = {"name": customer.name, "email": customer.email, "company": customer.company,
             "assigned_membership_id": customer.assigned_membership_id}
    changes = {key: [before[key], after[key]] for key in before if before[key] != after[key]}
    audit.record(session, customer.account_id, actor.user_id if actor else None, "customer.update", "customer",
                 customer.id, changes=changes)
    _commit_or_duplicate(session)
    return customer


def delete_customer(session: Session, actor: Membership | None, customer: Customer, now: datetime) -> None:
    """Mark a customer deleted; the row stays so imported mail keeps its history."""
    customer.deleted_at = now
    audit.record(session, customer.account_id, actor.user_id if actor else None, "customer.delete", "customer",
                 customer.id, name=customer.name, email=customer.email)
    session.commit()

