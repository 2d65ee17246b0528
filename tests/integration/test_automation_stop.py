"""Sales automations against real servers: Dovecot imports stop (or do not stop) them; steps go out over SMTPS."""
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest
from sqlalchemy import select

from portal.automations import services
from portal.automations.runner import send_due_steps
from portal.extensions import db
from portal.mailbox.credentials import StoredPasswords
from portal.mails.sending import SendEnvironment
from portal.models import Direction, Enrollment, EnrollmentState, MailMessage, MailTemplate, StopReason, utcnow
from portal.secretbox import SecretBox
from tests.factories import TEST_KEY, enable_email, make_account, make_customer
from tests.integration.mailbox import Mailbox, mail

CUSTOMER = "yamada@client.example"


@pytest.fixture
def world(app, dovecot, pki, mail_user, smtp_ssl):
    """An account with メール on, the owner's real mailbox, a customer they look after and a two-step sequence."""
    account, owner = make_account()
    enable_email(account, owner)
    customer = make_customer(account, name="山田 太郎", email=CUSTOMER, assigned=owner, company="山田商事")
    template = MailTemplate(account_id=account.id, name="ご案内", subject="{{顧客名}}様 {{会社名}}へのご案内",
                            body="{{顧客名}}様\n\nいつもお世話になっております。{{担当者名}}です。\nhttps://example.jp/catalog")
    db.session.add(template)
    db.session.commit()
    sequence = services.create_sequence(db.session, owner, services.SequenceData(
        "フォロー", True, [services.StepData(0, template.id), services.StepData(3, template.id)]))
    mailbox = Mailbox(dovecot, pki, mail_user, owner, smtp_ssl)
    return {"owner": owner, "customer": customer, "sequence": sequence, "mailbox": mailbox, "smtp": smtp_ssl}


def enrol(world) -> Enrollment:
    """Enrol the customer now."""
    return services.enroll_customer(db.session, world["owner"], world["sequence"], world["customer"], utcnow())


def reload(enrollment) -> Enrollment:
    """The enrolment as stored."""
    db.session.expire_all()
    return db.session.get(Enrollment, enrollment.id)


def auto_reply(sender: str, to: str) -> bytes:
    """An out-of-office answer as a mail server writes it (Auto-Submitted: auto-replied, a plain subject)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, "Re: ご案内"
    message["Auto-Submitted"] = "auto-replied"
    message["Message-ID"] = make_msgid(domain="client.example")
    message["Date"] = format_datetime(utcnow())
    message.set_content("ただいま出張中のため、返信が遅れます。")
    return message.as_bytes().replace(b"\n", b"\r\n")


def test_real_reply_imported_from_dovecot_stops_the_enrollment(world):
    """The importer stores the customer's mail and, in the same pass, stops the enrolment with that message."""
    enrollment = enrol(world)
    box = world["mailbox"]
    box.deliver(mail('"山田 太郎" <Yamada@Client.Example>', box.user.email, subject="Re: ご案内"))
    result = box.sync()
    assert result.imported == 1 and result.error is None
    [message] = db.session.scalars(select(MailMessage)).all()
    stopped = reload(enrollment)
    assert (stopped.state, stopped.stop_reason) == (EnrollmentState.STOPPED, StopReason.CUSTOMER_REPLIED)
    assert stopped.stop_message_id == message.id and stopped.finished_at is not None


def test_real_auto_reply_does_not_stop_but_a_later_reply_does(world):
    """Auto-Submitted: auto-replied is imported yet leaves the enrolment running; the person's answer stops it."""
    enrollment = enrol(world)
    box = world["mailbox"]
    box.deliver(auto_reply(CUSTOMER, box.user.email))
    box.deliver(mail(CUSTOMER, box.user.email, subject="【自動返信】不在のお知らせ"))
    assert box.sync().imported == 2
    assert all(m.direction == Direction.RECEIVED for m in db.session.scalars(select(MailMessage)))
    assert reload(enrollment).state == EnrollmentState.ACTIVE
    box.deliver(mail(CUSTOMER, box.user.email, subject="Re: ご案内 (ご返信)"))
    box.sync()
    assert reload(enrollment).stop_reason == StopReason.CUSTOMER_REPLIED


def test_own_sent_mail_to_the_customer_does_not_stop(world):
    """Mail the member sent (imported from Sent) is not the customer writing back."""
    enrollment = enrol(world)
    box = world["mailbox"]
    box.deliver(mail(box.user.email, CUSTOMER, subject="お見積書送付"), folder="Sent")
    assert box.sync().imported == 1
    assert reload(enrollment).state == EnrollmentState.ACTIVE


def test_due_step_goes_out_over_smtps_and_the_reply_to_it_stops_the_sequence(world):
    """A step goes out filled through real SMTPS and into Sent; the customer's answer from Dovecot stops the rest."""
    enrollment = enrol(world)
    box, smtp = world["mailbox"], world["smtp"]
    env = SendEnvironment(credentials=StoredPasswords(SecretBox(TEST_KEY)), policy=box.policy,
                          public_base_url="https://portal.example.jp", secret_key="test-secret", now=utcnow)
    assert send_due_steps(db.session, utcnow(), env) == 1
    [received] = smtp.messages
    sent = message_from_bytes(received.data)
    subject = str(make_header(decode_header(sent["Subject"])))
    assert subject == "山田 太郎様 山田商事へのご案内"
    assert received.rcpt_tos == [CUSTOMER] and received.auth_user == box.user.email
    text = sent.get_payload(0).get_payload(decode=True).decode()
    assert "いつもお世話になっております。" in text and world["owner"].user.name in text
    running = reload(enrollment)
    assert (running.state, running.next_position, running.last_error) == (EnrollmentState.ACTIVE, 1, None)
    with box.dovecot.connect(box.user.email, box.user.password) as imap:
        imap.select_folder("Sent", readonly=True)
        assert len(imap.search(["HEADER", "Message-ID", sent["Message-ID"].strip("<>")])) == 1
    box.sync()  # the Sent copy is the same message: no second row, no stop
    assert len(db.session.scalars(select(MailMessage)).all()) == 1
    assert reload(enrollment).state == EnrollmentState.ACTIVE
    answer = EmailMessage()
    answer["From"], answer["To"], answer["Subject"] = CUSTOMER, box.user.email, "Re: " + subject
    answer["Message-ID"], answer["Date"] = make_msgid(domain="client.example"), format_datetime(utcnow())
    answer["In-Reply-To"] = sent["Message-ID"]
    answer.set_content("資料ありがとうございます。")
    box.deliver(answer.as_bytes().replace(b"\n", b"\r\n"))
    box.sync()
    stopped = reload(enrollment)
    assert (stopped.state, stopped.stop_reason) == (EnrollmentState.STOPPED, StopReason.CUSTOMER_REPLIED)
    reply = db.session.get(MailMessage, stopped.stop_message_id)
    assert reply.thread_id == stopped.thread_id  # the answer joined the step's thread
    assert send_due_steps(db.session, utcnow(), env) == 0 and len(smtp.messages) == 1
