"""メールを作成 and the Cc and attachments of replies and new mail (issue 12 section 2), with a fake SMTP server."""
from dataclasses import replace
from email import message_from_bytes
from email.policy import default as default_policy
from io import BytesIO

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import func, select

from portal.extensions import db
from portal.mails import compose, sending
from portal.mailtemplates.services import TemplateData, create_template
from portal.models import Direction, MailAttachment, MailCustomer, MailDraft, MailMessage, Role
from tests.factories import enable_email, make_account, make_customer, make_link, make_member, make_message
from tests.fakes import FakeImap, FakeSmtp, environment


@pytest.fixture
def smtp(monkeypatch) -> FakeSmtp:
    """Send through a fake SMTP server (and accept the Sent copy) instead of the link's unreachable one."""
    fake = FakeSmtp()
    monkeypatch.setattr(sending, "send_environment", lambda config: replace(
        environment(fake, FakeImap()), attachments_max_bytes=config["MAIL_ATTACHMENTS_MAX_BYTES"]))
    return fake


@pytest.fixture
def office(app):
    """An account with メール on, its owner linked, a customer and a second customer."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    customer = make_customer(account, name="山田 太郎", email="yamada@client.example", company="山田商事")
    other = make_customer(account, name="佐藤 花子", email="sato@client.example")
    return {"account": account, "owner": owner, "customer": customer, "other": other}


def _new_mail(client, customer, **fields):
    """Post the new-mail form as the member would (files as (bytes, name) pairs)."""
    data = {"customer_id": str(customer), "subject": "資料のご案内", "body": "資料をお送りします。",
            "action": "send", "cc": ""}
    files = fields.pop("files", [])
    data.update(fields)
    if files:
        data["attachments"] = [(BytesIO(content), name) for content, name in files]
    return client.post("/mails/new", data=data, content_type="multipart/form-data")


def _sent() -> list[MailMessage]:
    """The portal-sent messages."""
    return list(db.session.scalars(select(MailMessage).where(MailMessage.direction == Direction.SENT)))


def test_customer_page_and_mail_list_offer_new_mail(client, auth, office):
    """「メールを作成」 on the customer page (for that customer) and on the mail list."""
    auth.login_member(office["owner"])
    customer = office["customer"]
    detail = BeautifulSoup(client.get(f"/customers/{customer.id}").get_data(as_text=True), "html.parser")
    [button] = [a for a in detail.select(".page-header a") if "メールを作成" in a.get_text()]
    assert button["href"] == f"/mails/new?customer={customer.id}"
    listing = BeautifulSoup(client.get("/mails").get_data(as_text=True), "html.parser")
    [button] = [a for a in listing.select(".page-header a") if "メールを作成" in a.get_text()]
    assert button["href"] == "/mails/new"
    page = BeautifulSoup(client.get(f"/mails/new?customer={customer.id}").get_data(as_text=True), "html.parser")
    assert page.select_one("#customer_id option[selected]")["value"] == str(customer.id)
    assert page.select_one("form[data-send-once]")["enctype"] == "multipart/form-data"
    assert "10.0 MB まで添付できます" in page.get_text()


def test_new_mail_with_cc_and_a_file_starts_a_thread_on_the_customers_timeline(client, auth, office, smtp):
    """To the customer, Cc to others (another customer among them, who does not get it on their timeline)."""
    auth.login_member(office["owner"])
    customer, other = office["customer"], office["other"]
    response = _new_mail(client, customer.id, cc="boss@partner.example、 sato@client.example",
                         files=[(b"%PDF-1.4 quote", "見積書.pdf")])
    assert response.status_code == 302
    [message] = _sent()
    assert response.headers["Location"].endswith(f"/mails/{message.id}#message-{message.id}")
    assert smtp.recipients == [["yamada@client.example", "boss@partner.example", "sato@client.example"]]
    delivered = message_from_bytes(smtp.sent[0].as_bytes(), policy=default_policy)
    assert delivered["To"] == "yamada@client.example"
    assert delivered["Cc"] == "boss@partner.example, sato@client.example"
    assert "In-Reply-To" not in delivered
    [part] = list(delivered.iter_attachments())
    assert part.get_filename() == "見積書.pdf" and part.get_content() == b"%PDF-1.4 quote"
    assert message.cc_addresses == "boss@partner.example, sato@client.example"
    assert [(a.filename, a.content_type, a.size_bytes) for a in message.attachments] == [
        ("見積書.pdf", "application/pdf", 14)]
    # Cc never makes it a customer's mail: only the To customer has it.
    assert db.session.scalars(select(MailCustomer.customer_id).where(
        MailCustomer.message_id == message.id)).all() == [customer.id]
    thread = client.get(f"/mails/{message.id}").get_data(as_text=True)
    assert "メールを送信しました" in thread and "見積書.pdf" in thread
    assert "資料のご案内" in client.get(f"/customers/{customer.id}").get_data(as_text=True)
    assert "資料のご案内" not in client.get(f"/customers/{other.id}").get_data(as_text=True)


def test_template_fills_the_subject_and_body_for_the_chosen_customer(client, auth, office):
    """テンプレートを挿入 on a new mail: the template's subject (when none is typed) and body, placeholders filled."""
    template = create_template(db.session, office["owner"], TemplateData(
        "ご挨拶", "{{会社名}} {{顧客名}}様へのご案内", "{{顧客名}}様\n担当の{{担当者名}}です。", shared=True))
    auth.login_member(office["owner"])
    response = client.post("/mails/new", data={"customer_id": str(office["customer"].id), "subject": "",
                                              "body": "", "template_id": str(template.id),
                                              "action": "insert_template"})
    soup = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert response.status_code == 200
    assert soup.select_one("#subject")["value"] == "山田商事 山田 太郎様へのご案内"
    assert soup.select_one("#body").get_text().lstrip().startswith("山田 太郎様\n担当の")
    assert _sent() == []


@pytest.mark.parametrize("fields,field_id,message", [
    ({"cc": "boss@partner"}, "cc", "Cc のメールアドレスが正しくありません（boss@partner）。"),
    ({"cc": "boss@partner.example\r\nBcc: spy@evil.example"}, "cc", "改行を含めることはできません。1行で入力してください。"),
    ({"cc": ", ".join(f"p{n}@partner.example" for n in range(21))}, "cc", "Cc は20件までです。"),
    ({"customer_id": ""}, "customer_id", "入力してください。"),
    ({"subject": ""}, "subject", "入力してください。"),
    ({"subject": "ご案内\nBcc: spy@evil.example"}, "subject", "改行を含めることはできません。1行で入力してください。"),
])
def test_bad_input_is_refused_beside_its_field_in_japanese(client, auth, office, smtp, fields, field_id, message):
    """422, the message under the field it concerns, nothing sent and no draft."""
    auth.login_member(office["owner"])
    response = _new_mail(client, office["customer"].id, **fields)
    assert response.status_code == 422
    soup = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    feedback = soup.select_one(f"#{field_id}").find_parent("div").select(".invalid-feedback")
    assert message in [item.get_text(strip=True) for item in feedback]
    assert _sent() == [] and smtp.sent == [] and db.session.scalar(select(MailDraft)) is None


def test_files_over_the_total_size_are_refused(client, auth, app, office, smtp):
    """More than MAIL_ATTACHMENTS_MAX_BYTES together: 422 beside the file field, and the page asks for files again."""
    app.config["MAIL_ATTACHMENTS_MAX_BYTES"] = 1024 * 1024
    auth.login_member(office["owner"])
    response = _new_mail(client, office["customer"].id, files=[(b"x" * 700_000, "a.bin"), (b"y" * 400_000, "b.bin")])
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "添付ファイルは合計 1.0 MB までです（選択したファイルは合計 1.0 MB）。" in page
    assert "選択した添付ファイルは送信されていません" in page
    assert _sent() == [] and smtp.sent == []


def test_customer_of_another_account_or_hidden_or_deleted(client, auth, office, smtp):
    """?customer= of another account or a deleted customer is 404, a restricted one 403; posting one is refused."""
    other_account, _ = make_account()
    stranger = make_customer(other_account)
    user = make_member(office["account"], Role.USER)
    make_link(user)
    office["account"].viewing_restricted = True
    db.session.commit()
    auth.login_member(user)
    assert client.get(f"/mails/new?customer={stranger.id}").status_code == 404
    assert client.get(f"/mails/new?customer={office['customer'].id}").status_code == 403
    for customer_id in (stranger.id, office["customer"].id):
        response = _new_mail(client, customer_id)
        assert response.status_code == 422
        assert "宛先の顧客を選んでください" in response.get_data(as_text=True)
    page = client.get("/mails/new").get_data(as_text=True)
    assert "yamada@client.example" not in page
    assert _sent() == []


def test_without_a_linked_mailbox_the_screen_says_so_and_nothing_is_sent(client, auth, office):
    """No link: the reason and a link to メールボックス連携; a send is refused with 409."""
    member = make_member(office["account"], Role.MANAGER)
    auth.login_member(member)
    page = client.get(f"/mails/new?customer={office['customer'].id}").get_data(as_text=True)
    assert "メールボックスが連携されていないため、送信できません" in page and "/settings/mailbox" in page
    response = _new_mail(client, office["customer"].id)
    assert response.status_code == 409 and "送信できません" in response.get_data(as_text=True)
    assert _sent() == []


def test_smtp_failure_keeps_the_new_mail_as_a_draft_for_that_customer(client, auth, office):
    """The link's server is unreachable: 502 in Japanese, and the next visit for that customer restores it."""
    auth.login_member(office["owner"])
    customer = office["customer"]
    response = _new_mail(client, customer.id, cc="boss@partner.example", body="大切な新規メール")
    assert response.status_code == 502
    assert "下書きとして保存しました" in response.get_data(as_text=True)
    again = BeautifulSoup(client.get(f"/mails/new?customer={customer.id}").get_data(as_text=True), "html.parser")
    assert "送信できなかった下書きを復元しました" in again.get_text()
    assert again.select_one("#cc")["value"] == "boss@partner.example"
    assert "大切な新規メール" in again.select_one("#body").get_text()
    other = client.get(f"/mails/new?customer={office['other'].id}").get_data(as_text=True)
    assert "大切な新規メール" not in other
    assert _sent() == []


def test_the_same_new_mail_form_twice_goes_out_once(client, auth, office, smtp):
    """A resubmitted page finds the first send: one delivery, one stored message."""
    auth.login_member(office["owner"])
    first = _new_mail(client, office["customer"].id, compose_id="n3J9xQ2mZp7LwR4tYv8bNc1d")
    second = _new_mail(client, office["customer"].id, compose_id="n3J9xQ2mZp7LwR4tYv8bNc1d")
    assert first.status_code == 302 and second.status_code == 302
    assert "このメールはすでに送信済みです" in client.get(second.headers["Location"]).get_data(as_text=True)
    assert len(smtp.sent) == 1 and len(_sent()) == 1


def test_a_reply_carries_cc_and_files_too(client, auth, office, smtp):
    """Replies gain Cc and attachments: in the headers, the parts, and the thread."""
    original = make_message(office["account"], [office["customer"]], subject="お見積り",
                            sender="yamada@client.example")
    auth.login_member(office["owner"])
    response = client.post(f"/mails/{original.id}/reply", data={
        "to": "yamada@client.example", "cc": "boss@partner.example", "subject": "Re: お見積り", "body": "承知しました。",
        "action": "send", "attachments": [(BytesIO(b"PK zip"), "資料.zip")]}, content_type="multipart/form-data")
    assert response.status_code == 302
    delivered = message_from_bytes(smtp.sent[0].as_bytes(), policy=default_policy)
    assert delivered["Cc"] == "boss@partner.example" and delivered["In-Reply-To"] == f"<{original.message_id_header}>"
    assert [part.get_filename() for part in delivered.iter_attachments()] == ["資料.zip"]
    [reply] = _sent()
    assert reply.thread_id == original.thread_id
    assert db.session.scalar(select(func.count()).select_from(MailAttachment).where(
        MailAttachment.message_id == reply.id)) == 1
    assert "資料.zip" in client.get(f"/mails/{reply.id}").get_data(as_text=True)


def test_a_path_in_a_file_name_is_cut_to_the_name(client, auth, office, smtp):
    """Some clients send the whole path: the customer sees only the file's name."""
    auth.login_member(office["owner"])
    response = _new_mail(client, office["customer"].id, files=[(b"data", "../../home/yamada/見積書.pdf")])
    assert response.status_code == 302
    [message] = _sent()
    assert message.attachments[0].filename == "見積書.pdf"
    assert [part.get_filename() for part in smtp.sent[0].walk() if part.get_filename()] == ["見積書.pdf"]


def test_a_hostile_file_name_and_type_are_cleaned_before_they_are_stored_or_sent():
    """A path, a line break or a quote in a name, and a made-up media type, never reach a header."""
    assert compose.attachment("C:\\Users\\yamada\\見積書.pdf", "application/pdf", b"").filename == "見積書.pdf"
    file = compose.attachment('..\\..\\evil\r\nX-Spy: "1".txt', "text/plain\r\nX-Spy: 1", b"data")
    assert (file.filename, file.content_type) == ('evil X-Spy: "1".txt', "application/octet-stream")
    assert compose.attachment("", "application/pdf; name=x.pdf", b"").filename == "attachment"
    assert compose.attachment("a.pdf", "Application/PDF; name=x.pdf", b"").content_type == "application/pdf"


def test_files_past_the_portal_wide_request_limit_still_go_out(client, auth, app, office, smtp):
    """A compose form may exceed MAX_CONTENT_LENGTH by the attachments' own limit, and no more (a Japanese 413)."""
    auth.login_member(office["owner"])
    app.config["MAIL_ATTACHMENTS_MAX_BYTES"] = 4 * 1024 * 1024
    three_megabytes = b"z" * (3 * 1024 * 1024)
    response = _new_mail(client, office["customer"].id, files=[(three_megabytes, "図面.dwg")])
    assert response.status_code == 302
    assert _sent()[0].attachments[0].size_bytes == len(three_megabytes)
    huge = _new_mail(client, office["customer"].id, files=[(b"z" * (7 * 1024 * 1024), "大きすぎる.zip")])
    assert huge.status_code == 413
    assert "添付ファイルは合計 4.0 MB までです" in huge.get_data(as_text=True)
    assert len(_sent()) == 1
