"""Stop on reply and the due-step runner, without mail servers (models, a fake SMTP and a fake IMAP)."""
from datetime import timedelta
from email.header import decode_header, make_header
from itertools import count

import pytest
from sqlalchemy import select

from portal.automations import services
from portal.automations.runner import RETRY_AFTER, send_due_steps
from portal.extensions import db
from portal.models import (Direction, Enrollment, EnrollmentState, MailCustomer, MailMessage, MailTemplate,
                           MembershipState, Role, StopReason)
from tests.factories import enable_email, make_account, make_customer, make_link, make_member
from tests.fakes import FAKE_NOW, FakeSmtp, environment

# Scenarios start when the fake send environment's clock stands.
START = FAKE_NOW
_keys = count(1)


@pytest.fixture
def setup(app):
    """An account with メール on, a template, a sequence (自動停止 on), and a customer enrolled at START."""
    account, owner = make_account()
    enable_email(account, owner)
    customer = make_customer(account, name="山田 太郎", email="yamada@client.example", assigned=owner)
    sequence = make_sequence(owner, "フォロー", [0, 3])
    enrollment = services.enroll_customer(db.session, owner, sequence, customer, START)
    return account, owner, customer, sequence, enrollment


def make_template(owner, subject="{{顧客名}}様 ご案内", body="{{会社名}} {{顧客名}}様\n担当：{{担当者名}}"):
    """A shared template of the owner's account."""
    template = MailTemplate(account_id=owner.account_id, name=f"テンプレート{next(_keys)}", subject=subject,
                            body=body)
    db.session.add(template)
    db.session.commit()
    return template


def make_sequence(owner, name, waits, stop_on_reply=True, template=None):
    """A sequence with one step per wait (all sending the same template)."""
    template = template or make_template(owner)
    return services.create_sequence(db.session, owner, services.SequenceData(
        name=name, stop_on_reply=stop_on_reply, steps=[services.StepData(wait, template.id) for wait in waits]))


def received(customer_ids, sender="yamada@client.example", subject="Re: ご案内", when=START + timedelta(hours=1),
             direction=Direction.RECEIVED, auto=False, account_id=None) -> MailMessage:
    """A newly imported message as the engine builds it: added to the session, not flushed."""
    message = MailMessage(account_id=account_id, message_key=f"mid:test-{next(_keys)}", direction=direction,
                          subject=subject, from_address=sender, received_at=when, auto_submitted=auto)
    message.customer_links.extend(MailCustomer(customer_id=customer_id) for customer_id in customer_ids)
    with db.session.no_autoflush:
        db.session.add(message)
    return message


def reload(enrollment) -> Enrollment:
    """The enrolment as stored."""
    db.session.expire_all()
    return db.session.get(Enrollment, enrollment.id)


def test_customer_reply_stops_the_enrollment(setup):
    """Received mail from the customer's own address: 停止, お客様からメールを受信, when and which mail."""
    account, _, customer, _, enrollment = setup
    now = START + timedelta(hours=2)
    message = received([customer.id], sender="Yamada@Client.Example", account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], now) == [enrollment]
    db.session.commit()
    stored = reload(enrollment)
    assert (stored.state, stored.stop_reason) == (EnrollmentState.STOPPED, StopReason.CUSTOMER_REPLIED)
    assert stored.finished_at == now and stored.stop_message_id == message.id and stored.next_due_at is None


@pytest.mark.parametrize("subject", ["自動応答：ただいま不在にしております", "不在のお知らせ", "【自動返信】受付しました",
                                     "Out of Office: back on Monday", "Automatic reply: ご案内",
                                     "AUTOMATIC REPLY", "[自動返信] Re: ご案内", "out of office"])
def test_out_of_office_subjects_do_not_stop(setup, subject):
    """Out-of-office subjects count as automatic even without an Auto-Submitted header."""
    account, _, customer, _, enrollment = setup
    message = received([customer.id], subject=subject, account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], START + timedelta(hours=2)) == []
    assert reload(enrollment).state == EnrollmentState.ACTIVE


def test_auto_submitted_mail_does_not_stop(setup):
    """Auto-Submitted / X-Autoreply / bounces (flagged by the parser) never stop a sequence."""
    account, _, customer, _, enrollment = setup
    message = received([customer.id], subject="Re: ご案内", auto=True, account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], START + timedelta(hours=2)) == []
    assert reload(enrollment).state == EnrollmentState.ACTIVE


def test_sent_mail_does_not_stop(setup):
    """Mail the member sent to the customer (送信) is not a reply."""
    account, owner, customer, _, enrollment = setup
    message = received([customer.id], sender="yamada@client.example", direction=Direction.SENT,
                       account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], START + timedelta(hours=2)) == []
    assert reload(enrollment).state == EnrollmentState.ACTIVE


def test_stop_on_reply_off_keeps_running(setup):
    """With 自動停止 off the sequence keeps going; another sequence of the same customer with it on stops."""
    account, owner, customer, _, enrollment = setup
    other = make_sequence(owner, "自動停止なし", [1], stop_on_reply=False)
    keeps = services.enroll_customer(db.session, owner, other, customer, START)
    message = received([customer.id], account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], START + timedelta(hours=2)) == [enrollment]
    db.session.commit()
    assert reload(keeps).state == EnrollmentState.ACTIVE
    assert reload(enrollment).state == EnrollmentState.STOPPED


def test_mail_from_before_the_enrollment_does_not_stop(setup):
    """A message that arrived before the enrolment started (a late import) does not stop it."""
    account, _, customer, _, enrollment = setup
    message = received([customer.id], when=START - timedelta(minutes=5), account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], START + timedelta(hours=2)) == []
    assert reload(enrollment).state == EnrollmentState.ACTIVE


def test_mail_in_the_same_second_as_the_enrollment_stops(setup):
    """Servers keep arrival times to the second: a reply in the enrolment's own second still counts."""
    account, _, customer, _, enrollment = setup
    message = received([customer.id], when=START.replace(microsecond=0), account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], START + timedelta(hours=2)) == [enrollment]


def test_other_customers_mail_does_not_stop(setup):
    """Another customer's reply stops only that customer's enrolment."""
    account, owner, customer, sequence, enrollment = setup
    other = make_customer(account, email="sato@client.example")
    message = received([other.id], sender="sato@client.example", account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], START + timedelta(hours=2)) == []
    assert reload(enrollment).state == EnrollmentState.ACTIVE


def test_customer_only_as_recipient_does_not_stop(setup):
    """A message linked to the customer because they were in To (someone else wrote) is not their reply."""
    account, _, customer, _, enrollment = setup
    message = received([customer.id], sender="colleague@client.example", account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], START + timedelta(hours=2)) == []
    assert reload(enrollment).state == EnrollmentState.ACTIVE


def test_finished_enrollments_are_left_alone(setup):
    """A stopped enrolment keeps its original reason when the customer writes later."""
    account, owner, customer, _, enrollment = setup
    services.stop_enrollment(db.session, owner, enrollment, START + timedelta(minutes=1))
    message = received([customer.id], account_id=account.id)
    assert services.stop_on_customer_reply(db.session, [message], START + timedelta(hours=2)) == []
    assert reload(enrollment).stop_reason == StopReason.BY_MEMBER


# --- the due-step runner with a fake SMTP and IMAP server ---------------------------------------------------

def subject_of(mime) -> str:
    """The decoded Subject header."""
    return str(make_header(decode_header(mime["Subject"])))


def test_runner_sends_due_steps_threads_them_and_completes(setup):
    """Step 1 at once, step 2 three days later in the same thread, then 完了."""
    account, owner, customer, sequence, enrollment = setup
    customer.company = "株式会社クライアント"
    db.session.commit()
    make_link(owner)
    smtp = FakeSmtp()
    assert send_due_steps(db.session, START + timedelta(minutes=1), environment(smtp)) == 1
    first = reload(enrollment)
    assert (first.state, first.next_position) == (EnrollmentState.ACTIVE, 1)
    assert first.next_due_at == START + timedelta(minutes=1, days=3)
    first_message_id = first.last_message_id
    assert subject_of(smtp.sent[0]) == "山田 太郎様 ご案内" and smtp.sent[0]["To"] == "yamada@client.example"
    body = smtp.sent[0].get_payload(0).get_payload(decode=True).decode()
    assert "株式会社クライアント 山田 太郎様" in body and owner.user.name in body
    assert send_due_steps(db.session, START + timedelta(days=1), environment(smtp)) == 0  # not due yet
    later = START + timedelta(days=4)
    assert send_due_steps(db.session, later, environment(smtp)) == 1
    done = reload(enrollment)
    assert (done.state, done.finished_at, done.next_due_at) == (EnrollmentState.COMPLETED, later, None)
    first_message = db.session.get(MailMessage, first_message_id)
    second_message = db.session.get(MailMessage, done.last_message_id)
    assert second_message.thread_id == first_message.thread_id == done.thread_id
    assert smtp.sent[1]["In-Reply-To"] == f"<{first_message.message_id_header}>"
    assert second_message.direction == Direction.SENT and second_message.tracked
    assert [link.customer_id for link in second_message.customer_links] == [customer.id]


def test_runner_without_assignee_keeps_running_and_retries_in_an_hour(setup):
    """No 担当者: still 実行中, a Japanese error, next try an hour later; nothing is sent."""
    account, owner, customer, sequence, enrollment = setup
    customer.assigned_membership_id = None
    db.session.commit()
    smtp = FakeSmtp()
    now = START + timedelta(minutes=1)
    assert send_due_steps(db.session, now, environment(smtp)) == 0
    stored = reload(enrollment)
    assert stored.state == EnrollmentState.ACTIVE and stored.next_position == 0
    assert "担当者が設定されていない" in stored.last_error and stored.next_due_at == now + RETRY_AFTER
    assert smtp.sent == []


def test_runner_without_mailbox_or_with_a_refusal_retries(setup):
    """No linked mailbox, then an SMTP refusal: 実行中 with the reason; after linking and a good server it goes out."""
    account, owner, customer, sequence, enrollment = setup
    now = START + timedelta(minutes=1)
    send_due_steps(db.session, now, environment(FakeSmtp()))
    assert "メールボックスが連携されていない" in reload(enrollment).last_error
    make_link(owner)
    later = now + RETRY_AFTER
    send_due_steps(db.session, later, environment(FakeSmtp(refuse=True)))
    stored = reload(enrollment)
    assert stored.state == EnrollmentState.ACTIVE and stored.next_position == 0
    assert "送信に失敗しました" in stored.last_error and stored.next_due_at == later + RETRY_AFTER
    assert db.session.scalars(select(MailMessage)).all() == []  # the refused mail is not in the thread
    smtp = FakeSmtp()
    assert send_due_steps(db.session, later + RETRY_AFTER, environment(smtp)) == 1
    stored = reload(enrollment)
    assert stored.next_position == 1 and stored.last_error is None and len(smtp.sent) == 1


def test_runner_stops_deleted_customers_and_skips_accounts_without_email(setup):
    """A deleted customer ends as 顧客が削除された; an account with メール off sends nothing."""
    account, owner, customer, sequence, enrollment = setup
    from portal.customers.services import delete_customer
    from portal.features.services import set_feature
    from portal.models import EMAIL_FEATURE
    make_link(owner)
    other_customer = make_customer(account, email="sato@client.example", assigned=owner)
    waiting = services.enroll_customer(db.session, owner, sequence, other_customer, START)
    delete_customer(db.session, owner, customer, START)
    set_feature(db.session, owner, EMAIL_FEATURE, False, START)
    smtp = FakeSmtp()
    now = START + timedelta(minutes=1)
    assert send_due_steps(db.session, now, environment(smtp)) == 0
    stopped = reload(enrollment)
    assert (stopped.state, stopped.stop_reason, stopped.finished_at) == (
        EnrollmentState.STOPPED, StopReason.CUSTOMER_DELETED, now)
    assert reload(waiting).state == EnrollmentState.ACTIVE and smtp.sent == []


def test_runner_refuses_a_disabled_assignee(setup):
    """A 担当者 whose membership is disabled cannot send: the reason says so."""
    account, owner, customer, sequence, enrollment = setup
    member = make_member(account, Role.USER, state=MembershipState.DISABLED)
    customer.assigned_membership_id = member.id
    db.session.commit()
    send_due_steps(db.session, START + timedelta(minutes=1), environment(FakeSmtp()))
    assert "利用停止中" in reload(enrollment).last_error


def test_a_step_sent_just_before_a_crash_is_not_sent_again(setup, monkeypatch):
    """The mail went out but the process died before the step advanced: the retry recognises it, sends nothing."""
    account, owner, customer, sequence, enrollment = setup
    make_link(owner)
    smtp = FakeSmtp()
    from portal.automations import runner

    def crash(enrollment, now):
        raise RuntimeError("process killed")
    monkeypatch.setattr(runner, "_advance", crash)
    now = START + timedelta(minutes=1)
    assert send_due_steps(db.session, now, environment(smtp)) == 0
    assert len(smtp.sent) == 1 and reload(enrollment).next_position == 0
    monkeypatch.undo()
    assert send_due_steps(db.session, now + RETRY_AFTER, environment(smtp)) == 1
    assert len(smtp.sent) == 1  # not mailed twice
    stored = reload(enrollment)
    assert stored.next_position == 1 and stored.last_message_id is not None
    assert len(db.session.scalars(select(MailMessage)).all()) == 1
