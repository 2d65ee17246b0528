"""End-to-end: the connection check shows progress and runs once; SMTP認証なし on a preset; other changed screens."""
import socket
import threading

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Role
from tests.e2e.browser import assert_only_portal, chromium_page, keep_screenshot, log_in, watch
from tests.factories import PASSWORD, enable_email, make_account, make_customer, make_member, make_message

pytestmark = pytest.mark.browser


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers, so a check waits for its timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    for connection in held:
        connection.close()
    listener.close()


def seed(app) -> tuple[str, str]:
    """An account with メール on, an owner and a plain user; returns their addresses."""
    with app.app_context():
        account, owner = make_account("株式会社デモ")
        enable_email(account, owner)
        customer = make_customer(account, name="株式会社サンプル", email="client@client.example")
        make_message(account, [customer], subject="不在のお知らせ", sender="client@client.example")
        user = make_member(account, Role.USER, email="user@demo.example.jp")
        emails = owner.user.email, user.user.email
        db.session.remove()
    return emails


def test_the_check_shows_progress_and_a_second_press_sends_nothing(live_server_with, silent_server, tmp_path):
    """While the IMAP check waits on a silent server: 接続を確認しています…, one POST only; then the error beside
    the port, the typed host kept and the password empty."""
    app, base_url = live_server_with(MAIL_EXTRA_PORTS=[silent_server], MAIL_TIMEOUT_SECONDS=3)
    _, user = seed(app)
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, user, PASSWORD)
        page.goto(f"{base_url}/settings/mailbox")
        page.fill("#imap_host", "127.0.0.1")
        page.fill("#imap_port", str(silent_server))
        page.select_option("#imap_security", "starttls")
        page.fill("#imap_password", "typed-secret")
        page.fill("#smtp_host", "127.0.0.1")
        button = page.locator("#link-form button[type=submit]")
        # A listener added after the page's own sees whether the page let each submit go; it then keeps the
        # browser on this page, so the button can be looked at as it is while a check runs.
        page.evaluate("""() => { window.submits = [];
            document.getElementById('link-form').addEventListener('submit', event => {
                window.submits.push(event.defaultPrevented); event.preventDefault(); }); }""")
        button.click()
        expect(button).to_contain_text("接続を確認しています")
        expect(button).to_have_attribute("aria-disabled", "true")
        keep_screenshot(page, tmp_path / "link-check-progress.png")
        # The button no longer takes pointer clicks (Bootstrap's .disabled); a keyboard or script press still
        # submits, and the page's script holds that one back.
        page.evaluate("document.querySelector('#link-form button[type=submit]').click()")
        assert page.evaluate("window.submits") == [False, True]  # the second press was held back
        page.reload()
        page.fill("#imap_host", "127.0.0.1")
        page.fill("#imap_port", str(silent_server))
        page.select_option("#imap_security", "starttls")
        page.fill("#imap_password", "typed-secret")
        page.fill("#smtp_host", "127.0.0.1")
        page.locator("#link-form button[type=submit]").click()
        expect(page.locator("#imap_port ~ .invalid-feedback")).to_contain_text("応答がありません", timeout=20_000)
        expect(page.locator("#imap_host")).to_have_value("127.0.0.1")
        expect(page.locator("#imap_password")).to_have_value("")
        keep_screenshot(page, tmp_path / "link-check-error-beside-field.png")
        # The refused check answers 422, which Chromium logs as a failed resource: that one is expected.
        assert_only_portal(requests, [e for e in errors if "status of 422" not in e], base_url)


def test_owner_sets_smtp_without_auth_on_a_preset_and_sees_the_changed_screens(live_server, tmp_path):
    """The preset form's SMTP認証なし box; the customer form's import rule; the 自動返信 badge; a user's 403."""
    app, base_url = live_server
    owner, user = seed(app)
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, owner, PASSWORD)
        page.goto(f"{base_url}/settings/mailbox-servers/new")
        expect(page.locator("h1")).to_have_text("メールボックスサーバーの推奨設定を追加")
        page.fill("#name", "社内リレー")
        page.fill("#imap_host", "imap.example.co.jp")
        page.fill("#smtp_host", "relay.example.co.jp")
        page.get_by_label("SMTP認証なし").check()
        keep_screenshot(page, tmp_path / "preset-smtp-without-auth.png")
        page.get_by_role("button", name="保存").click()
        expect(page.get_by_role("alert").first).to_contain_text("保存しました")
        page.goto(f"{base_url}/customers/new")
        expect(page.locator("main")).to_contain_text("取り込まれるのは、この顧客を登録した後に送受信したメールだけです")
        keep_screenshot(page, tmp_path / "customer-form.png")
        page.goto(f"{base_url}/mails")
        page.get_by_role("link", name="不在のお知らせ").first.click()
        expect(page.locator(".auto-reply").first).to_have_text("自動返信")
        keep_screenshot(page, tmp_path / "thread-auto-reply.png")
        assert_only_portal(requests, errors, base_url)
    with chromium_page() as page:
        log_in(page, base_url, user, PASSWORD)
        page.goto(f"{base_url}/settings/mailbox-servers/new")
        expect(page.locator("h1")).to_have_text("操作権限がありません")
        keep_screenshot(page, tmp_path / "forbidden-edit.png")
