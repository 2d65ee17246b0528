"""The one scoping helper (portal/scoping.py), and services that scope the ids they are given themselves."""
import pytest
from sqlalchemy import func, select

from portal.automations import services as automations
from portal.customers import services as customers
from portal.extensions import db
from portal.mailbox import services as mailbox
from portal.mailsync.connection import ConnectionPolicy
from portal.models import Customer, MailTemplate, Membership, Role, User, utcnow
from portal.policy import PermissionDenied
from portal.scoping import for_account, get_in_account
from portal.secretbox import SecretBox
from tests.factories import TEST_KEY, enable_email, fake_verifier, make_account, make_customer, make_link, make_member


@pytest.fixture
def two_accounts(app):
    """Two accounts, each with its owner and one customer."""
    ours, our_owner = make_account()
    theirs, their_owner = make_account()
    return (ours, our_owner, make_customer(ours)), (theirs, their_owner, make_customer(theirs))


def _sequence(owner, name="フォロー"):
    """A one-step sequence of the owner's account."""
    template = MailTemplate(account_id=owner.account_id, name=f"{name}テンプレート", subject="件名", body="本文")
    db.session.add(template)
    db.session.commit()
    return automations.create_sequence(db.session, owner, automations.SequenceData(
        name=name, stop_on_reply=True, steps=[automations.StepData(0, template.id)]))


def test_for_account_keeps_one_accounts_rows(two_accounts):
    """select(Model), a column of it and an aggregate with the model named all see one account only."""
    (ours, _, our_customer), (theirs, _, their_customer) = two_accounts
    assert list(db.session.scalars(for_account(select(Customer), ours.id))) == [our_customer]
    assert list(db.session.scalars(for_account(select(Customer.id), theirs.id))) == [their_customer.id]
    count = for_account(select(func.count(Customer.id)), ours.id, Customer)
    assert db.session.scalar(count) == 1


def test_for_account_scopes_the_named_model_of_a_join(two_accounts):
    """With a join, the named model is the one scoped (members' sign-in addresses through their memberships)."""
    (_, our_owner, _), (theirs, their_owner, _) = two_accounts
    emails = select(User.email).join(Membership, Membership.user_id == User.id)
    assert list(db.session.scalars(for_account(emails, theirs.id, Membership))) == [their_owner.user.email]
    ids = for_account(select(Membership.id).join(Membership.user), theirs.id)  # the first entity: Membership
    assert list(db.session.scalars(ids)) == [their_owner.id] != [our_owner.id]


def test_for_account_refuses_a_statement_without_an_entity(app):
    """An aggregate with no model named cannot be scoped by guess: a TypeError, not an unscoped query."""
    with pytest.raises(TypeError):
        for_account(select(func.count()), 1)


def test_get_in_account_answers_none_for_another_accounts_id(two_accounts):
    """Another account's id does not exist; criteria narrow further."""
    (ours, _, our_customer), (_, _, their_customer) = two_accounts
    assert get_in_account(db.session, Customer, our_customer.id, ours.id) == our_customer
    assert get_in_account(db.session, Customer, their_customer.id, ours.id) is None
    assert get_in_account(db.session, Customer, our_customer.id, ours.id, Customer.deleted_at.is_not(None)) is None


def test_sequence_counts_scope_the_ids_they_are_given(two_accounts):
    """Another account's sequence id counts nothing, whatever the caller passes."""
    (ours, our_owner, our_customer), (theirs, their_owner, their_customer) = two_accounts
    our_sequence, their_sequence = _sequence(our_owner), _sequence(their_owner)
    automations.enroll_customer(db.session, our_owner, our_sequence, our_customer, utcnow())
    automations.enroll_customer(db.session, their_owner, their_sequence, their_customer, utcnow())
    counts = automations.sequence_counts(db.session, ours.id, [our_sequence.id, their_sequence.id])
    assert counts == {our_sequence.id: (1, 1), their_sequence.id: (0, 0)}


def test_customer_enrollments_scope_the_customer_id(two_accounts):
    """Another account's customer id lists no enrolments."""
    (ours, _, _), (theirs, their_owner, their_customer) = two_accounts
    automations.enroll_customer(db.session, their_owner, _sequence(their_owner), their_customer, utcnow())
    assert automations.customer_enrollments(db.session, ours.id, their_customer.id) == []
    assert len(automations.customer_enrollments(db.session, theirs.id, their_customer.id)) == 1


def test_sequence_changes_refuse_another_accounts_sequence(two_accounts):
    """update_sequence and delete_sequence do not trust the caller to have scoped the sequence."""
    (_, our_owner, _), (_, their_owner, _) = two_accounts
    their_sequence = _sequence(their_owner)
    data = automations.SequenceData(name="乗っ取り", stop_on_reply=False, steps=[])
    with pytest.raises(PermissionDenied):
        automations.update_sequence(db.session, our_owner, their_sequence, data)
    with pytest.raises(PermissionDenied):
        automations.delete_sequence(db.session, our_owner, their_sequence)
    db.session.rollback()
    assert db.session.get(type(their_sequence), their_sequence.id).name == "フォロー"


def test_a_customers_assignee_is_scoped_to_the_account(two_accounts):
    """An assignee id of another account's member is refused as not a member here."""
    (ours, our_owner, _), (theirs, _, _) = two_accounts
    stranger = make_member(theirs, Role.USER)
    with pytest.raises(customers.InvalidAssignee):
        customers.create_customer(db.session, our_owner, customers.CustomerData(
            name="顧客", email="new@client.example", assigned_membership_id=stranger.id))


def test_a_member_unlinks_and_reauthenticates_only_their_own_link(two_accounts):
    """The mailbox services check the link is the actor's own, not only the route that found it."""
    (ours, our_owner, _), _ = two_accounts
    enable_email(ours, our_owner)
    colleague = make_member(ours, Role.ADMIN)
    link = make_link(colleague)
    with pytest.raises(PermissionDenied):
        mailbox.unlink_member_link(db.session, our_owner, link, utcnow())
    with pytest.raises(PermissionDenied):
        mailbox.reauthenticate(db.session, our_owner, link, "new", None, ConnectionPolicy(), SecretBox(TEST_KEY),
                               utcnow(), verifier=fake_verifier())
    db.session.rollback()
    assert mailbox.live_link(db.session, colleague.id) == link
