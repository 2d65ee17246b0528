"""Replying against real servers: aiosmtpd delivers it, Dovecot keeps it in Sent, a later import adds no duplicate."""
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Direction, MailMessage, MailSource, TrackedLink
from portal.tracking.tokens import TrackedRef, read_open_token
from tests.integration.mailbox import CUSTOMER, Mailbox, mail


@pytest.fixture
def linked(app, account, dovecot, pki, mail_user, smtp_ssl):
    """The owner's real mailbox, and the app told to trust the test CA and the test ports."""
    box = Mailbox(dovecot, pki, mail_user, account[1], smtp_ssl)
    app.config.update(MAIL_CA_FILE=str(pki.ca_file), MAIL_EXTRA_PORTS=[dovecot.imaps_port, smtp_ssl.port],
                      PUBLIC_BASE_URL="https://portal.example.jp")
    return box


def _received_thread(mailbox) -> MailMessage:
    """A customer's mail, imported for real from the INBOX."""
    mailbox.deliver(mail(f'"山田 太郎" <{CUSTOMER}>', mailbox.user.email, subject="お見積りのお願い",
                         body="見積書をお送りください。\n詳細は https://client.example/spec をご覧ください。"))
    mailbox.sync()
    return db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.RECEIVED))


def _send(client, auth, mailbox, original, body="ご連絡ありがとうございます。\n資料: https://example.jp/資料.pdf"):
    """Post the reply form as the member would."""
    auth.login_member(mailbox.member)
    return client.post(f"/mails/{original.id}/reply", data={
        "to": CUSTOMER, "subject": "Re: お見積りのお願い", "body": body, "action": "send"})


def test_reply_arrives_threaded_with_tracking_and_lands_in_sent_once(client, auth, linked, smtp_ssl, dovecot):
    """The whole round trip: headers, body, thread, Sent copy, and a later import that adds no duplicate."""
    original = _received_thread(linked)
    response = _send(client, auth, linked, original)
    assert response.status_code == 302
    [delivered] = smtp_ssl.messages
    assert delivered.rcpt_tos == [CUSTOMER] and delivered.mail_from == linked.user.email
    sent = message_from_bytes(delivered.data, policy=default_policy)
    assert sent["In-Reply-To"] == f"<{original.message_id_header}>"
    assert original.message_id_header in sent["References"]
    assert sent["Message-ID"] != f"<{original.message_id_header}>"
    assert sent["From"].addresses[0].addr_spec == linked.user.email
    assert str(sent["Subject"]) == "Re: お見積りのお願い"
    assert "ご連絡ありがとうございます。" in sent.get_body(("plain",)).get_content()
    html = sent.get_body(("html",)).get_content()
    assert "https://portal.example.jp/t/o/" in html and "https://portal.example.jp/t/c/" in html
    assert "https://example.jp/資料.pdf" not in html.split("<a href=")[1].split(">")[0]  # the link is rewritten

    db.session.expire_all()
    reply = db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT))
    assert reply.thread_id == original.thread_id and reply.tracked
    assert [link.url for link in db.session.scalars(select(TrackedLink))] == ["https://example.jp/資料.pdf"]
    # The tokens in the mail carry the reply's random tracking id, not its sequential id, and they work.
    open_path = "/t/o/" + html.split("https://portal.example.jp/t/o/")[1].split('"')[0]
    click_path = "/t/c/" + html.split("https://portal.example.jp/t/c/")[1].split('"')[0]
    assert reply.tracking_id and read_open_token(client.application.config["SECRET_KEY"], open_path[5:]) == \
        TrackedRef(tracking_id=reply.tracking_id)
    assert client.get(open_path).status_code == 200 and client.get(click_path).status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "返信を送信しました" in page and "ご連絡ありがとうございます。" in page

    imap = dovecot.connect(linked.user.email, linked.user.password)
    imap.select_folder("Sent", readonly=True)
    assert len(imap.search(["HEADER", "Message-ID", reply.message_id_header])) == 1
    imap.logout()

    linked.sync()
    assert db.session.scalar(select(func.count()).select_from(MailMessage)) == 2
    sightings = db.session.scalars(select(MailSource.folder_role).where(MailSource.message_id == reply.id)).all()
    assert [role.value for role in sightings] == ["sent"]


def test_server_that_files_its_own_copy_gets_no_second_one(client, auth, linked, smtp_ssl, dovecot):
    """Like Gmail: when Sent already holds the message, the portal does not append another."""
    original = _received_thread(linked)
    # The SMTP server files every accepted message in Sent itself, before the portal looks.
    smtp_ssl.messages = _FilingList(
        lambda received: dovecot.append(linked.user.email, linked.user.password, "Sent", received.data))
    assert _send(client, auth, linked, original).status_code == 302
    reply = db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT))
    imap = dovecot.connect(linked.user.email, linked.user.password)
    imap.select_folder("Sent", readonly=True)
    assert len(imap.search(["HEADER", "Message-ID", reply.message_id_header])) == 1
    imap.logout()


class _FilingList(list):
    """A message list whose append also files the message in Sent (a server keeping its own copy)."""

    def __init__(self, on_append):
        super().__init__()
        self._on_append = on_append

    def append(self, item):
        """Record and file."""
        super().append(item)
        self._on_append(item)


def test_rejected_recipient_is_explained_and_the_draft_kept(client, auth, linked, smtp_ssl):
    """A 550 for the recipient: the Japanese reason, 502, the typed text kept, nothing stored as sent."""
    original = _received_thread(linked)
    smtp_ssl.rejected_recipients.add(CUSTOMER)
    response = _send(client, auth, linked, original, body="届かない返信")
    assert response.status_code == 502
    page = response.get_data(as_text=True)
    assert f"宛先 {CUSTOMER} はメールサーバーに受け付けられませんでした" in page and "届かない返信" in page
    assert db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT)) is None


def test_smtp_login_failure_is_explained(client, auth, linked, smtp_ssl):
    """The SMTP server refuses the password: 502 and the login message in Japanese."""
    original = _received_thread(linked)
    smtp_ssl.users[linked.user.email] = "changed-on-the-server"
    response = _send(client, auth, linked, original)
    assert response.status_code == 502
    assert "SMTPサーバーにログインできません" in response.get_data(as_text=True)


def test_the_same_compose_form_sent_twice_goes_out_once(client, auth, linked, smtp_ssl):
    """A resubmitted page (or a second click) finds the first send and mails nothing again."""
    original = _received_thread(linked)
    auth.login_member(linked.member)
    form = {"to": CUSTOMER, "subject": "Re: お見積りのお願い", "body": "一度だけ届く返信", "action": "send",
            "compose_id": "k3J9xQ2mZp7LwR4tYv8bNc1d"}
    first = client.post(f"/mails/{original.id}/reply", data=form)
    second = client.post(f"/mails/{original.id}/reply", data=form, follow_redirects=True)
    assert first.status_code == 302 and second.status_code == 200
    assert "この返信はすでに送信済みです" in second.get_data(as_text=True)
    assert len(smtp_ssl.messages) == 1
    assert db.session.scalar(select(func.count()).select_from(MailMessage).where(
        MailMessage.direction == Direction.SENT)) == 1


def test_without_a_public_address_the_reply_goes_out_untracked(client, auth, linked, smtp_ssl, app):
    """No PUBLIC_BASE_URL: customers get working links and no image pointing at an unreachable portal."""
    app.config["PUBLIC_BASE_URL"] = None
    original = _received_thread(linked)
    auth.login_member(linked.member)
    assert "計測なしで送信します" in client.get(f"/mails/{original.id}/reply").get_data(as_text=True)
    assert _send(client, auth, linked, original).status_code == 302
    html = message_from_bytes(smtp_ssl.messages[0].data, policy=default_policy).get_body(("html",)).get_content()
    assert '<a href="https://example.jp/資料.pdf">' in html and "/t/o/" not in html and "<img" not in html
    reply = db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT))
    assert not reply.tracked and db.session.scalar(select(func.count()).select_from(TrackedLink)) == 0
