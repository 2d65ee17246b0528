"""Whose mailbox an automation step goes out from: the 担当者's, and only when they or a manager enrolled."""
from datetime import timedelta
from email.header import decode_header, make_header

import pytest

from portal.automations import services
from portal.automations.runner import RETRY_AFTER, send_due_steps
from portal.customers.services import CustomerData, update_customer
from portal.extensions import db
from portal.models import Enrollment, EnrollmentState, MailTemplate, Role
from tests.factories import enable_email, make_account, make_customer, make_link, make_member
from tests.fakes import FAKE_NOW, FakeSmtp, environment

START = FAKE_NOW
NOW = START + timedelta(minutes=1)


def make_sequence(owner, name, waits):
    """A sequence with one step per wait, all sending one shared template."""
    template = MailTemplate(account_id=owner.account_id, name="ご案内", subject="{{顧客名}}様 ご案内",
                            body="{{顧客名}}様\n担当：{{担当者名}}")
    db.session.add(template)
    db.session.commit()
    return services.create_sequence(db.session, owner, services.SequenceData(
        name=name, stop_on_reply=True, steps=[services.StepData(wait, template.id) for wait in waits]))


def reload(enrollment) -> Enrollment:
    """The enrolment as stored."""
    db.session.expire_all()
    return db.session.get(Enrollment, enrollment.id)


def subject_of(mime) -> str:
    """The decoded Subject header."""
    return str(make_header(decode_header(mime["Subject"])))


@pytest.fixture
def team(app):
    """An account with メール on, an owner, a manager and a user, each with a linked mailbox, and a sequence."""
    account, owner = make_account()
    enable_email(account, owner)
    manager, user = make_member(account, Role.MANAGER), make_member(account, Role.USER)
    for member in (owner, manager, user):
        make_link(member)
    return account, owner, manager, user, make_sequence(owner, "フォロー", [0, 3])


def reassign(customer, manager, assignee) -> None:
    """A manager makes someone else the customer's 担当者."""
    update_customer(db.session, manager, customer, CustomerData(name=customer.name, email=customer.email,
                                                                assigned_membership_id=assignee.id))


def test_a_users_enrolment_is_held_when_the_customer_moves_to_another_member(team):
    """The user enrolled their customer; a manager hands it to the owner: nothing goes out from the owner."""
    account, owner, manager, user, sequence = team
    customer = make_customer(account, email="yamada@client.example", assigned=user)
    enrollment = services.enroll_customer(db.session, user, sequence, customer, START)
    reassign(customer, manager, owner)
    smtp = FakeSmtp()
    assert send_due_steps(db.session, NOW, environment(smtp)) == 0
    held = reload(enrollment)
    assert smtp.sent == [] and held.state == EnrollmentState.ACTIVE and held.next_position == 0
    assert "本人かマネージャー以上のユーザーが登録したものではない" in held.last_error
    assert held.next_due_at == NOW + RETRY_AFTER
    reassign(customer, manager, user)  # handed back: the user's own enrolment continues from their mailbox
    assert send_due_steps(db.session, NOW + RETRY_AFTER, environment(smtp)) == 1
    assert user.user.email in smtp.sent[0]["From"]


def test_a_managers_enrolment_goes_out_from_the_assignee(team):
    """A manager enrols the user's customer: the step goes out from the user's mailbox."""
    account, owner, manager, user, sequence = team
    customer = make_customer(account, email="yamada@client.example", assigned=user)
    services.enroll_customer(db.session, manager, sequence, customer, START)
    smtp = FakeSmtp()
    assert send_due_steps(db.session, NOW, environment(smtp)) == 1
    assert user.user.email in smtp.sent[0]["From"]


def test_a_demoted_enroller_no_longer_sends_from_someone_else(team):
    """The manager who enrolled the owner's customer becomes a plain user: the step is held."""
    account, owner, manager, user, sequence = team
    customer = make_customer(account, email="yamada@client.example", assigned=owner)
    enrollment = services.enroll_customer(db.session, manager, sequence, customer, START)
    manager.role = Role.USER
    db.session.commit()
    smtp = FakeSmtp()
    assert send_due_steps(db.session, NOW, environment(smtp)) == 0
    assert smtp.sent == [] and "登録したものではない" in reload(enrollment).last_error


def test_the_service_refuses_a_users_enrolment_of_another_members_customer(team):
    """enroll_customer itself refuses, so no caller can skip the rule."""
    account, owner, manager, user, sequence = team
    customer = make_customer(account, email="yamada@client.example", assigned=owner)
    with pytest.raises(services.EnrollForOthersDenied):
        services.enroll_customer(db.session, user, sequence, customer, START)


@pytest.mark.parametrize("name,company", [("山田\r\nBcc: victim@client.example", "山田商事"),
                                          ("山田 太郎", "山田商事\u2028Bcc: x@client.example"),
                                          ("山田\n太郎", "株式会社\x0b山田")])
def test_placeholder_values_never_break_the_subject(team, name, company):
    """A name or company with line breaks fills the subject on one line; the mail goes out with no extra header."""
    account, owner, manager, user, sequence = team
    customer = make_customer(account, name=name, company=company, email="yamada@client.example", assigned=owner)
    template = sequence.steps[0].template
    template.subject = "{{会社名}} {{顧客名}}様 ご案内"
    db.session.commit()
    services.enroll_customer(db.session, owner, sequence, customer, START)
    smtp = FakeSmtp()
    assert send_due_steps(db.session, NOW, environment(smtp)) == 1
    [mail] = smtp.sent
    subject = subject_of(mail)
    assert not any(char in subject for char in "\r\n\x0b\u2028")
    assert subject.endswith("様 ご案内") and mail["Bcc"] is None
