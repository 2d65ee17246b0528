"""End-to-end in Debian's Chromium: a member links a token-only mailbox by OAuth2 sign-in, mail is imported by the
scheduler's job, and a reply goes out by SMTP XOAUTH2 (Dovecot submission → aiosmtpd) and lands in Sent once."""
import re
from email import message_from_bytes
from email.policy import default as default_policy
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

import scheduler
from portal.extensions import db
from portal.models import Direction, LinkState, MailboxLink, MailMessage, Role
from tests.e2e.browser import chromium_page, keep_screenshot, log_in, watch
from tests.factories import PASSWORD, enable_email, make_account, make_customer, make_member
from tests.integration.mailbox import CUSTOMER, mail
from tests.integration.oauth_world import make_oauth_preset

pytestmark = pytest.mark.browser

PRESET = "テストOIDC"
CUSTOMER_NAME = "山田 太郎"
RECEIVED_SUBJECT = "打ち合わせ日程のご相談"
REPLY_BODY = "ご連絡ありがとうございます。来週火曜日はいかがでしょうか。"
# Linking verifies IMAP and SMTP with the new token, sending relays and files a copy in Sent: allow some seconds.
SERVER_TIMEOUT_MS = 30_000


@pytest.fixture
def oauth_live_portal(live_server_with, pki, provider, oauth_dovecot):
    """The live portal allowed to reach the provider and the token-only Dovecot; its redirect URI registered."""
    app, base_url = live_server_with(
        MAIL_CA_FILE=str(pki.ca_file), MAIL_TIMEOUT_SECONDS=10, MAIL_ALLOW_PLAINTEXT=True,
        MAIL_ALLOWED_NETWORKS="127.0.0.0/8", MAIL_EXTRA_PORTS=[oauth_dovecot.imaps_port, oauth_dovecot.submission_port])
    # The port is known only once the server listens; the redirect URI is read per request.
    app.config["PUBLIC_BASE_URL"] = base_url
    client = provider.register_client([f"{base_url}/settings/mailbox/oauth/callback"])
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        make_customer(account, name=CUSTOMER_NAME, email=CUSTOMER)
        make_oauth_preset(account, provider, oauth_dovecot, client, name=PRESET)
        member_email = make_member(account, Role.USER).user.email
        db.session.remove()
    return app, base_url, member_email


def only_portal_and_provider(requests: list, errors: list, base_url: str, provider) -> None:
    """Every request went to the portal or the provider's sign-in page, and no script failed."""
    allowed = {urlsplit(base_url).netloc, urlsplit(provider.issuer).netloc}
    assert requests and all(urlsplit(url).netloc in allowed for url in requests), requests
    assert not errors, errors


def sent_copies(oauth_dovecot, user, message_id: str) -> int:
    """How many copies of the message the mailbox's Sent folder holds on the server."""
    with oauth_dovecot.connect(user.email, user.password) as imap:
        sent_folder = next(name for flags, _, name in imap.list_folders() if b"\\Sent" in flags)
        imap.select_folder(sent_folder, readonly=True)
        return len(imap.search(["HEADER", "Message-ID", message_id]))


def test_member_signs_in_imports_and_replies_by_xoauth2(oauth_live_portal, provider, oauth_dovecot, relay_sink,
                                                        oauth_mail_user, tmp_path):
    """「テストOIDC でサインインして連携」 → the provider's consent → 連携中; new mail imported by the scheduler's job;
    返信 → 送信 reaches the relay once and the server's Sent once; the next pass does not import it twice."""
    app, base_url, member_email = oauth_live_portal
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, member_email, PASSWORD)
        page.goto(f"{base_url}/settings/mailbox")
        expect(page.locator("h1")).to_have_text("メールボックス連携")
        keep_screenshot(page, tmp_path / "oauth-link-form.png")

        page.get_by_role("button", name=f"{PRESET} でサインインして連携").click()
        expect(page.locator("h1")).to_have_text("Test OpenID Provider")
        assert urlsplit(page.url).netloc == urlsplit(provider.issuer).netloc
        page.get_by_role("textbox", name="email").fill(oauth_mail_user.email)
        keep_screenshot(page, tmp_path / "oauth-provider-consent.png")
        page.get_by_role("button", name="Allow").click()

        expect(page.locator("#link-state")).to_have_text("連携中", timeout=SERVER_TIMEOUT_MS)
        expect(page.get_by_role("alert")).to_contain_text("メールボックスを連携しました。")
        expect(page.locator("main")).to_contain_text(oauth_mail_user.email)
        assert urlsplit(page.url).netloc == urlsplit(base_url).netloc
        keep_screenshot(page, tmp_path / "oauth-linked.png")

        # Mail that arrives after linking comes in through the scheduler's own job.
        oauth_dovecot.append(oauth_mail_user.email, oauth_mail_user.password, "INBOX",
                             mail(f'"{CUSTOMER_NAME}" <{CUSTOMER}>', oauth_mail_user.email, subject=RECEIVED_SUBJECT,
                                  body="来週のどこかでお打ち合わせできますか。"))
        scheduler.sync_job(app)
        with app.app_context():
            link = db.session.scalar(select(MailboxLink))
            assert (link.state, link.last_error) == (LinkState.ACTIVE, None) and link.last_synced_at is not None
            assert db.session.scalar(select(MailMessage.subject)) == RECEIVED_SUBJECT

        page.get_by_role("navigation").get_by_text("送受信メール", exact=True).click()
        page.get_by_role("link", name=RECEIVED_SUBJECT, exact=True).click()
        expect(page.locator("h1")).to_have_text(RECEIVED_SUBJECT)
        expect(page.locator(".mail-text")).to_contain_text("来週のどこかでお打ち合わせできますか。")

        page.get_by_role("link", name="返信", exact=True).click()
        expect(page.locator("#to")).to_have_value(CUSTOMER)
        page.locator("#body").fill(REPLY_BODY)
        page.get_by_role("button", name="送信", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("返信を送信しました。", timeout=SERVER_TIMEOUT_MS)
        expect(page).to_have_url(re.compile(r"/mails/\d+#message-\d+$"))
        expect(page.locator("main")).to_contain_text("このスレッドのメール 2件（古い順）")
        keep_screenshot(page, tmp_path / "oauth-thread-after-reply.png")

    with app.app_context():
        [sent] = db.session.scalars(select(MailMessage).where(MailMessage.direction == Direction.SENT)).all()
        message_id = sent.message_id_header
    relayed = [m for m in relay_sink.messages if message_id.encode() in m.data]
    assert len(relayed) == 1 and relayed[0].rcpt_tos == [CUSTOMER]
    assert relayed[0].mail_from == oauth_mail_user.email
    sent_mail = message_from_bytes(relayed[0].data, policy=default_policy)
    assert REPLY_BODY in sent_mail.get_body(("plain",)).get_content()
    assert sent_copies(oauth_dovecot, oauth_mail_user, message_id) == 1
    # The Sent copy is seen by the next pass and recognised as the reply already stored.
    with app.app_context():  # not synced for half an interval: the scheduler's next round would skip it
        db.session.get(MailboxLink, link.id).last_synced_at = None
        db.session.commit()
    scheduler.sync_job(app)
    with app.app_context():
        assert db.session.get(MailboxLink, link.id).last_synced_at is not None
        assert db.session.scalar(select(func.count(MailMessage.id))
                                 .where(MailMessage.direction == Direction.SENT)) == 1
        assert db.session.scalar(select(func.count(MailMessage.id))) == 2
    only_portal_and_provider(requests, errors, base_url, provider)
