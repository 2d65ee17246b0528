"""End-to-end: the mail list on a 390 px phone is a list of cards with no sideways scrolling."""
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Direction, utcnow
from tests.e2e.browser import assert_only_portal, chromium_page, keep_screenshot, log_in, watch
from tests.factories import enable_email, make_account, make_customer, make_message

pytestmark = pytest.mark.browser

LONG_SUBJECT = "【重要】2026年度下期のお見積り・ご契約条件・納品スケジュールについてのご確認とご相談"


def test_mail_list_at_390_px_is_cards_without_horizontal_scroll(live_server, tmp_path):
    """Date, direction, counterpart and subject on each card; the page is never wider than the phone."""
    app, base_url = live_server
    with app.app_context():
        account, owner = make_account("株式会社デモ")
        enable_email(account, owner)
        customer = make_customer(account, name="長い名前の顧客株式会社",
                                 email="very.long.address.of.the.customer.contact@client-company.example")
        for number in range(6):
            make_message(account, [customer], subject=f"{LONG_SUBJECT}（{number}）",
                         direction=Direction.SENT if number % 2 else Direction.RECEIVED,
                         sender=customer.email, to=customer.email, received_at=utcnow() - timedelta(hours=number))
        make_message(account, [customer], subject="不在のお知らせ", sender=customer.email)
        email = owner.user.email
        db.session.remove()
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, email, "correct-horse-battery")
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{base_url}/mails")
        cards = page.locator(".mail-cards .mail-card")
        expect(cards).to_have_count(7)
        expect(page.locator("table.mail-list")).to_be_hidden()
        expect(cards.first).to_contain_text("自動返信")
        expect(cards.nth(1)).to_contain_text("受信")
        expect(cards.nth(2)).to_contain_text("送信")
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], widths
        keep_screenshot(page, tmp_path / "mail-list-390.png")
        page.set_viewport_size({"width": 1280, "height": 800})
        expect(page.locator("table.mail-list")).to_be_visible()
        expect(page.locator(".mail-cards")).to_be_hidden()
        assert_only_portal(requests, errors, base_url)
