"""メールを作成 against real servers: aiosmtpd gets the right headers and parts, Dovecot keeps it once in Sent, and
a later import adds nothing (issue 12 section 2)."""
from email import message_from_bytes
from email.policy import default as default_policy
from io import BytesIO

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Customer, Direction, MailAttachment, MailCustomer, MailMessage, MailSource
from tests.factories import make_customer
from tests.integration.mailbox import CUSTOMER, Mailbox

PARTNER = "boss@partner.example"
QUOTE = b"%PDF-1.4\n% quote for Yamada\n" + bytes(range(256)) * 40  # binary, so base64 must carry it intact


@pytest.fixture
def linked(app, account, dovecot, pki, mail_user, smtp_ssl):
    """The owner's real mailbox, and the app told to trust the test CA and the test ports."""
    box = Mailbox(dovecot, pki, mail_user, account[1], smtp_ssl)
    app.config.update(MAIL_CA_FILE=str(pki.ca_file), MAIL_EXTRA_PORTS=[dovecot.imaps_port, smtp_ssl.port],
                      PUBLIC_BASE_URL="https://portal.example.jp")
    return box


def test_new_mail_with_cc_and_a_file_arrives_sits_once_in_sent_and_is_not_imported_again(
        client, auth, account, linked, smtp_ssl, dovecot):
    """The whole round trip of a new mail: envelope, headers, parts, thread, Sent copy, and a re-import."""
    customer = db.session.scalar(select(Customer).where(Customer.email == CUSTOMER))
    partner = make_customer(account[0], name="上司 様", email=PARTNER)  # a customer, but only in Cc
    auth.login_member(linked.member)
    response = client.post("/mails/new", content_type="multipart/form-data", data={
        "customer_id": str(customer.id), "cc": PARTNER, "subject": "お見積書の送付",
        "body": "山田様\nお見積書をお送りします。\n詳細: https://example.jp/quote", "action": "send",
        "compose_id": "q7Lm2Zx9Pw4Rt8Yv3Nb6Kc1d", "attachments": [(BytesIO(QUOTE), "御見積書.pdf")]})
    assert response.status_code == 302

    [delivered] = smtp_ssl.messages
    assert delivered.mail_from == linked.user.email and delivered.rcpt_tos == [CUSTOMER, PARTNER]
    sent = message_from_bytes(delivered.data, policy=default_policy)
    assert sent["From"].addresses[0].addr_spec == linked.user.email
    assert [a.addr_spec for a in sent["To"].addresses] == [CUSTOMER]
    assert [a.addr_spec for a in sent["Cc"].addresses] == [PARTNER]
    assert str(sent["Subject"]) == "お見積書の送付"
    assert sent["In-Reply-To"] is None and sent["References"] is None  # a new thread
    assert "Bcc" not in sent
    assert sent.get_content_type() == "multipart/mixed"
    assert "お見積書をお送りします。" in sent.get_body(("plain",)).get_content()
    html = sent.get_body(("html",)).get_content()
    assert "https://portal.example.jp/t/o/" in html and "https://portal.example.jp/t/c/" in html
    [file] = list(sent.iter_attachments())
    assert file.get_filename() == "御見積書.pdf" and file.get_content_type() == "application/pdf"
    assert file.get_content() == QUOTE

    db.session.expire_all()
    message = db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT))
    assert sent["Message-ID"] == f"<{message.message_id_header}>"
    assert message.thread_id is not None and message.cc_addresses == PARTNER
    thread_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "メールを送信しました" in thread_page and "御見積書.pdf" in thread_page
    assert "お見積書の送付" in client.get(f"/customers/{customer.id}").get_data(as_text=True)

    imap = dovecot.connect(linked.user.email, linked.user.password)
    imap.select_folder("Sent", readonly=True)
    [uid] = imap.search(["HEADER", "Message-ID", message.message_id_header])
    copy = message_from_bytes(imap.fetch([uid], ["RFC822"])[uid][b"RFC822"], policy=default_policy)
    imap.logout()
    assert [a.addr_spec for a in copy["Cc"].addresses] == [PARTNER]
    assert [part.get_filename() for part in copy.iter_attachments()] == ["御見積書.pdf"]

    linked.sync()
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(MailMessage)) == 1
    assert db.session.scalar(select(func.count()).select_from(MailAttachment)) == 1
    assert [role.value for role in db.session.scalars(
        select(MailSource.folder_role).where(MailSource.message_id == message.id))] == ["sent"]
    # Cc never makes it the Cc customer's mail, neither when sent nor when its Sent copy is seen.
    assert db.session.scalars(select(MailCustomer.customer_id).where(
        MailCustomer.message_id == message.id)).all() == [customer.id]
    assert "お見積書の送付" not in client.get(f"/customers/{partner.id}").get_data(as_text=True)

    # The same form again (a resubmitted page) sends nothing more.
    again = client.post("/mails/new", content_type="multipart/form-data", data={
        "customer_id": str(customer.id), "cc": PARTNER, "subject": "お見積書の送付", "body": "二度目",
        "action": "send", "compose_id": "q7Lm2Zx9Pw4Rt8Yv3Nb6Kc1d"})
    assert again.status_code == 302 and len(smtp_ssl.messages) == 1
