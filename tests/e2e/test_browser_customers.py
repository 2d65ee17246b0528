"""End-to-end: the demo owner adds a customer through the real screens in Debian's Chromium."""
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.settings import services
from tests.e2e.browser import chromium_page, log_in, record_console_error

pytestmark = pytest.mark.browser

OWNER_EMAIL = "owner@demo.example.jp"


def seed(app) -> None:
    """Create the demo account, members and customers through the real service."""
    with app.app_context():
        services.seed_demo(db.session)
        db.session.remove()


def test_owner_adds_customer(live_server, tmp_path):
    """Login → 顧客 → 顧客を追加 → 保存 lists the customer with a lower-cased email and a success flash."""
    app, base_url = live_server
    seed(app)
    with chromium_page() as page:
        requests, errors = [], []
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: record_console_error(message, errors))
        page.on("pageerror", lambda error: errors.append(str(error)))

        log_in(page, base_url, OWNER_EMAIL, services.DEMO_PASSWORD)
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
