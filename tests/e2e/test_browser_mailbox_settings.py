"""End-to-end: 機能契約, メールボックスサーバーの推奨設定 and メールボックス連携 in Debian's Chromium."""
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.extensions import db
from portal.features.forms import AGREE
from portal.presets.services import PresetData, create_preset
from portal.models import Membership, Role, Security
from portal.settings import services
from tests.e2e.browser import assert_only_portal, chromium_page, keep_screenshot, log_in, watch
from tests.factories import PASSWORD, enable_email, make_account, make_member

pytestmark = pytest.mark.browser

OWNER_EMAIL = "owner@demo.example.jp"
PRESET = "本社メールサーバー"
RENAMED = "本社メールサーバー（新）"
# The server check connects to the test Dovecot and SMTP server; 5 s each, so allow more than expect's default.
LINK_TIMEOUT_MS = 30_000


def seed_demo(app, email_on: bool = False) -> None:
    """Create the demo account through the real service, optionally with メール on."""
    with app.app_context():
        account = services.seed_demo(db.session)
        if email_on:
            owner = db.session.scalar(select(Membership).where(Membership.account_id == account.id,
                                                               Membership.role == Role.OWNER))
            enable_email(account, owner)
        db.session.remove()


def open_setting(page, title: str) -> None:
    """アカウント・機能設定 in the navigation, then the card with the title."""
    page.get_by_role("navigation").get_by_text("アカウント・機能設定", exact=True).click()
    expect(page.locator("h1")).to_have_text("アカウント・機能設定")
    page.get_by_role("link", name=title, exact=True).click()
    expect(page.locator("h1")).to_have_text(title)


def feature_row(page):
    """The メール row of the feature list."""
    return page.get_by_role("table").first.locator("tbody tr", has_text="メール")


def history_rows(page):
    """The rows of the 課金履歴 table."""
    return page.locator(".card", has=page.get_by_text("課金履歴", exact=True)).locator("tbody tr")


def test_owner_turns_email_on(live_server, tmp_path):
    """機能契約 → オンにする → both agreements → 確認 shows オン and 「オン（課金開始）」; unticked it stays オフ."""
    app, base_url = live_server
    seed_demo(app)
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, OWNER_EMAIL, services.DEMO_PASSWORD)
        open_setting(page, "機能契約")
        expect(feature_row(page).locator(".badge")).to_have_text("オフ")

        feature_row(page).get_by_role("link", name="オンにする").click()
        expect(page.locator("h1")).to_have_text("メール機能をオンにする")
        page.get_by_role("button", name="確認").click()
        expect(page.get_by_text(AGREE)).to_have_count(2)
        page.get_by_role("link", name="キャンセル").click()
        expect(feature_row(page).locator(".badge")).to_have_text("オフ")
        expect(history_rows(page)).to_have_text(["課金履歴はまだありません。"])

        feature_row(page).get_by_role("link", name="オンにする").click()
        page.get_by_label("有料オプションであり").check()
        page.get_by_label("取り込んだメールの保存容量").check()
        page.get_by_role("button", name="確認").click()

        expect(page.get_by_role("alert")).to_contain_text("メール機能をオンにしました。")
        expect(feature_row(page).locator(".badge")).to_have_text("オン")
        expect(feature_row(page).get_by_role("link", name="オフにする")).to_be_visible()
        expect(history_rows(page)).to_have_count(1)
        expect(history_rows(page).first).to_contain_text("オン（課金開始）")
        expect(history_rows(page).first).to_contain_text("山田 太郎")
        keep_screenshot(page, tmp_path / "features.png")
    # Chromium logs the deliberately refused 「確認」 (status 422) as a console error; exactly that one is expected.
    refused = [error for error in errors if "422" in error and "/settings/features/email/on" in error]
    assert len(refused) == 1, errors
    assert_only_portal(requests, [error for error in errors if error not in refused], base_url)


def fill_preset(page, name: str) -> None:
    """Fill the preset form with a name and the company's servers."""
    page.fill("#name", name)
    page.fill("#imap_host", "imap.example.co.jp")
    page.fill("#imap_port", "993")
    page.select_option("#imap_security", "ssl")
    page.fill("#smtp_host", "smtp.example.co.jp")
    page.fill("#smtp_port", "587")
    page.select_option("#smtp_security", "starttls")


def preset_row(page, name: str):
    """The list row whose 設定名 is exactly the name."""
    return page.locator("tbody tr").filter(has=page.locator("td:first-child").get_by_text(name, exact=True))


def test_owner_adds_edits_and_deletes_preset(live_server, tmp_path):
    """追加 → 保存, pen → rename → 保存, trash → 「はい、削除します」 leaves 「推奨設定はまだありません。」."""
    app, base_url = live_server
    seed_demo(app, email_on=True)
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, OWNER_EMAIL, services.DEMO_PASSWORD)
        open_setting(page, "メールボックスサーバーの推奨設定")

        page.get_by_role("link", name="追加").click()
        expect(page.locator("h1")).to_have_text("メールボックスサーバーの推奨設定を追加")
        fill_preset(page, PRESET)
        page.get_by_role("button", name="保存").click()
        expect(page.get_by_role("alert")).to_contain_text("メールボックスサーバーの推奨設定を保存しました。")
        expect(preset_row(page, PRESET)).to_contain_text("imap.example.co.jp:993")
        expect(preset_row(page, PRESET)).to_contain_text("smtp.example.co.jp:587")

        pen = preset_row(page, PRESET).locator("a", has=page.locator("i.bi-pencil"))
        expect(pen).to_have_attribute("aria-label", f"「{PRESET}」を編集")
        pen.click()
        expect(page.locator("h1")).to_have_text("メールボックスサーバーの推奨設定を編集")
        expect(page.locator("#name")).to_have_value(PRESET)
        page.fill("#name", RENAMED)
        page.get_by_role("button", name="保存").click()
        expect(preset_row(page, RENAMED)).to_contain_text("imap.example.co.jp:993")
        expect(preset_row(page, PRESET)).to_have_count(0)

        preset_row(page, RENAMED).locator("a", has=page.locator("i.bi-trash")).click()
        expect(page.locator("h1")).to_have_text("推奨設定の削除")
        expect(page.locator("main")).to_contain_text(f"推奨設定「{RENAMED}」を削除しますか？")
        page.get_by_role("button", name="はい、削除します").click()
        expect(page.get_by_role("alert")).to_contain_text(f"推奨設定「{RENAMED}」を削除しました。")
        expect(page.locator("tbody tr")).to_have_text(["推奨設定はまだありません。"])
        keep_screenshot(page, tmp_path / "presets.png")
    assert_only_portal(requests, errors, base_url)


def test_owner_adds_a_google_workspace_oauth_preset(live_server_with, tmp_path):
    """OAuth2 shows its fields; choosing Google Workspace fills Google's servers and shows its how-to (the
    screen's script under the CSP); the list then says OAuth2: Google Workspace."""
    app, base_url = live_server_with(PUBLIC_BASE_URL="https://crm.example.jp")
    seed_demo(app, email_on=True)
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, OWNER_EMAIL, services.DEMO_PASSWORD)
        page.goto(f"{base_url}/settings/mailbox-servers/new")
        expect(page.locator("#oauth-fields")).to_be_hidden()
        page.fill("#name", "Google Workspace")
        page.fill("#imap_host", "")
        page.select_option("#auth_method", "oauth2")
        expect(page.locator("#oauth-fields")).to_be_visible()
        expect(page.locator("#imap_host")).to_have_value("outlook.office365.com")  # Microsoft 365 comes first
        page.select_option("#oauth_provider", "google")
        expect(page.locator("#imap_host")).to_have_value("imap.gmail.com")
        expect(page.locator("#smtp_host")).to_have_value("smtp.gmail.com")
        expect(page.locator("#smtp_port")).to_have_value("587")
        expect(page.locator("#smtp_security")).to_have_value("starttls")
        expect(page.get_by_text("Google Workspace の準備")).to_be_visible()
        expect(page.get_by_text("Microsoft 365 の準備")).to_be_hidden()
        expect(page.locator("#oauth_tenant")).to_be_hidden()
        expect(page.locator("#redirect-uri")).to_have_value("https://crm.example.jp/settings/mailbox/oauth/callback")
        page.fill("#oauth_client_id", "1234-abc.apps.googleusercontent.com")
        page.fill("#oauth_client_secret", "GOCSPX-browser-secret")
        keep_screenshot(page, tmp_path / "oauth-preset-form.png")
        page.get_by_role("button", name="保存").click()
        expect(page.get_by_role("alert")).to_contain_text("メールボックスサーバーの推奨設定を保存しました。")
        expect(preset_row(page, "Google Workspace")).to_contain_text("OAuth2: Google Workspace")
        expect(preset_row(page, "Google Workspace")).to_contain_text("imap.gmail.com:993")
        assert "GOCSPX-browser-secret" not in page.content()
    assert_only_portal(requests, errors, base_url)


@pytest.fixture
def mail_portal(live_server_with, pki, dovecot, smtp_ssl):
    """A portal that trusts the test CA and allows the test servers' ports; returns (app, base_url)."""
    return live_server_with(MAIL_CA_FILE=str(pki.ca_file), MAIL_EXTRA_PORTS=[dovecot.imaps_port, smtp_ssl.port],
                            MAIL_TIMEOUT_SECONDS=5)


def seed_user_with_preset(app, dovecot, smtp_ssl) -> str:
    """An account with メール on, a preset for the test servers and a plain user; returns the user's email."""
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        create_preset(db.session, owner, PresetData(
            name=PRESET, imap_host="127.0.0.1", imap_port=dovecot.imaps_port, imap_security=Security.SSL,
            smtp_host="127.0.0.1", smtp_port=smtp_ssl.port, smtp_security=Security.SSL))
        email = make_member(account, Role.USER).user.email
        db.session.remove()
    return email


def test_user_links_mailbox_from_preset(mail_portal, dovecot, smtp_ssl, mail_user, tmp_path):
    """推奨設定から選ぶ fills the servers; 接続を確認して連携する against Dovecot + aiosmtpd shows 「連携中」."""
    app, base_url = mail_portal
    login_email = seed_user_with_preset(app, dovecot, smtp_ssl)
    smtp_ssl.add_user(mail_user.email, mail_user.password)
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, login_email, PASSWORD)
        open_setting(page, "メールボックス連携")

        page.get_by_label("推奨設定から選ぶ").select_option(label=PRESET)
        expect(page.locator("#imap_host")).to_have_value("127.0.0.1")
        expect(page.locator("#imap_port")).to_have_value(str(dovecot.imaps_port))
        expect(page.locator("#imap_security")).to_have_value("ssl")
        expect(page.locator("#smtp_port")).to_have_value(str(smtp_ssl.port))
        page.fill("#email", mail_user.email)
        page.fill("#imap_username", mail_user.email)
        page.fill("#imap_password", mail_user.password)
        page.get_by_role("button", name="接続を確認して連携する").click()

        expect(page.locator("#link-state")).to_have_text("連携中", timeout=LINK_TIMEOUT_MS)
        expect(page.get_by_role("alert")).to_contain_text("メールボックスを連携しました。")
        expect(page.locator("main")).to_contain_text(mail_user.email)
        keep_screenshot(page, tmp_path / "mailbox.png")
    assert_only_portal(requests, errors, base_url)
