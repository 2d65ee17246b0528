"""End-to-end: the demo owner adds a customer through the real screens in Debian's Chromium."""
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from portal.extensions import db
from portal.settings import services

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium tries to reach the internet on its own.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OWNER_EMAIL = "owner@demo.example.jp"


@contextmanager
def chromium_page():
    """A page in a fresh Chromium; a missing binary fails the test instead of skipping it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install it with "
                    "`apt-get install -y --no-install-recommends chromium fonts-noto-cjk` "
                    "(never `playwright install`)", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(locale="ja-JP", viewport={"width": 1280, "height": 800})
        finally:
            browser.close()


def record_console_error(message, errors: list) -> None:
    """Keep console errors, except the favicon Chromium fetches by itself (the portal ships none)."""
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        errors.append(f"{message.text} ({message.location.get('url')})")


def seed(app) -> None:
    """Create the demo account, members and customers through the real service."""
    with app.app_context():
        services.seed_demo(db.session)
        db.session.remove()


def log_in(page, base_url: str) -> None:
    """Sign in as the demo owner through the login form."""
    page.goto(f"{base_url}/login")
    page.fill("input[name=email]", OWNER_EMAIL)
    page.fill("input[name=password]", services.DEMO_PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    expect(page.locator("h1")).to_have_text("ホーム")


def test_owner_adds_customer(live_server, tmp_path):
    """Login → 顧客 → 顧客を追加 → 保存 lists the customer with a lower-cased email and a success flash."""
    app, base_url = live_server
    seed(app)
    with chromium_page() as page:
        requests, errors = [], []
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: record_console_error(message, errors))
        page.on("pageerror", lambda error: errors.append(str(error)))

        log_in(page, base_url)
        page.get_by_role("navigation").get_by_text("顧客", exact=True).click()
        expect(page.locator("h1")).to_have_text("顧客")
        page.get_by_text("顧客を追加", exact=True).click()
        expect(page.locator("h1")).to_have_text("顧客の追加")
        page.fill("input[name=name]", "小林 次郎")
        page.fill("input[name=email]", "Kobayashi@Example.JP")
        page.fill("input[name=company]", "株式会社コバヤシ製作所")
        page.get_by_role("button", name="保存").click()

        expect(page.get_by_role("alert")).to_contain_text("顧客を登録しました。")
        assert urlsplit(page.url).path == "/customers"
        row = page.locator("tbody tr", has_text="小林 次郎")
        expect(row).to_contain_text("kobayashi@example.jp")
        expect(row).to_contain_text("株式会社コバヤシ製作所")
        expect(page.locator("tbody")).not_to_contain_text("Kobayashi@Example.JP")

        screenshot = tmp_path / "customers.png"
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")
        assert screenshot.is_file() and screenshot.stat().st_size > 0

    portal_host = urlsplit(base_url).netloc
    assert requests and all(urlsplit(url).netloc == portal_host for url in requests), requests
    assert not errors, errors
