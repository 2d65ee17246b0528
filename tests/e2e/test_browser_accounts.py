"""End-to-end in Chromium: inviting a person who already signs in elsewhere, changing a password (the other
browser is signed out), and a reset link that works once."""
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect, sync_playwright

from portal.extensions import db
from portal.models import Role
from portal.settings import services
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, assert_only_portal, keep_screenshot, log_in, watch
from tests.factories import PASSWORD, make_account, make_member

pytestmark = pytest.mark.browser

OWNER = "owner@demo.example.jp"
PERSON = "person@b-sha.example.jp"


def seed(app) -> None:
    """The demo account, and account B whose member signs in with their own password."""
    with app.app_context():
        services.seed_demo(db.session)
        account_b, _ = make_account("B社")
        make_member(account_b, Role.USER, email=PERSON)
        db.session.remove()


@contextmanager
def two_browsers():
    """Two separate browser contexts (two people, or one person on two devices) in one Chromium."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium (never `playwright install`)", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield [browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 800}).new_page()
                   for _ in range(2)]
        finally:
            browser.close()


def open_user_menu_item(page, name: str) -> None:
    """Open the user menu at the top right and choose an item."""
    page.locator("#mainNav .dropdown-toggle").click()
    page.get_by_role("link", name=name).click()


def test_an_existing_person_is_invited_and_accepts(live_server, tmp_path):
    """The owner invites B社's member; nothing happens until that person opens the link with their password."""
    app, base_url = live_server
    seed(app)
    with two_browsers() as (owner, person):
        requests, errors = watch(owner)
        log_in(owner, base_url, OWNER, services.DEMO_PASSWORD)
        owner.goto(f"{base_url}/settings/users")
        owner.get_by_role("link", name="ユーザーを招待").click()
        owner.fill("input[name=email]", PERSON)
        owner.fill("input[name=name]", "招待 する人")
        owner.select_option("select[name=role]", "manager")
        owner.get_by_role("button", name="招待する").click()
        expect(owner.locator("h1")).to_have_text("招待リンク")
        link = owner.locator("#one-time-link").input_value()
        assert link.startswith(f"{base_url}/invitations/")
        keep_screenshot(owner, tmp_path / "invitation-link.png")
        owner.get_by_role("link", name="ユーザー管理へ戻る").click()
        expect(owner.locator("#invitations")).to_contain_text(PERSON)
        expect(owner.locator("#invitations")).to_contain_text("招待中")
        expect(owner.locator("#members")).not_to_contain_text(PERSON)
        keep_screenshot(owner, tmp_path / "members-with-invitation.png")

        person.goto(link)
        expect(person.locator("h1")).to_have_text("アカウントへの招待")
        expect(person.locator("main")).to_contain_text("デモ株式会社")
        person.fill("input[name=password]", "wrong-password-1")
        person.fill("input[name=password_confirm]", "wrong-password-1")
        person.get_by_role("button", name="参加する").click()
        expect(person.locator(".invalid-feedback")).to_contain_text("パスワードが正しくありません。")
        keep_screenshot(person, tmp_path / "invitation-page.png")
        person.fill("input[name=password]", PASSWORD)
        person.fill("input[name=password_confirm]", PASSWORD)
        person.get_by_role("button", name="参加する").click()
        expect(person.locator("h1")).to_have_text("ホーム")
        expect(person.get_by_role("alert")).to_contain_text("「デモ株式会社」に参加しました。")

        owner.reload()
        expect(owner.locator("#members")).to_contain_text(PERSON)
        expect(owner.locator("#members")).to_contain_text("userさん")  # their own name, not the typed one
        expect(owner.locator("#members")).not_to_contain_text("招待 する人")
        assert owner.locator("#invitations").count() == 0
    assert_only_portal(requests, errors, base_url)


def test_changing_the_password_signs_out_the_other_browser(live_server, tmp_path):
    """Signed in on two devices; a change on one keeps it signed in and ends the other."""
    app, base_url = live_server
    seed(app)
    with two_browsers() as (laptop, phone):
        requests, errors = watch(laptop)
        for page in (laptop, phone):
            log_in(page, base_url, PERSON, PASSWORD)
        open_user_menu_item(laptop, "パスワードの変更")
        expect(laptop.locator("h1")).to_have_text("パスワードの変更")
        laptop.fill("input[name=current_password]", PASSWORD)
        laptop.fill("input[name=password]", "a-fresh-password-1")
        laptop.fill("input[name=password_confirm]", "a-fresh-password-1")
        keep_screenshot(laptop, tmp_path / "change-password.png")
        laptop.get_by_role("button", name="変更する").click()
        expect(laptop.get_by_role("alert")).to_contain_text("パスワードを変更しました。")
        laptop.reload()
        expect(laptop.locator("h1")).to_have_text("ホーム")
        phone.reload()
        expect(phone.locator("h1")).to_have_text("ログイン")
        log_in(phone, base_url, PERSON, "a-fresh-password-1")
    assert_only_portal(requests, errors, base_url)


def test_a_reset_link_works_once(live_server, tmp_path):
    """The owner issues a link for a member; the member sets a password with it; the same link then fails."""
    app, base_url = live_server
    seed(app)
    with two_browsers() as (owner, member):
        requests, errors = watch(member)
        log_in(owner, base_url, OWNER, services.DEMO_PASSWORD)
        owner.goto(f"{base_url}/settings/users")
        owner.locator("#members tr", has_text="user@demo.example.jp").get_by_role(
            "link", name="パスワード再設定リンク").click()
        owner.get_by_role("button", name="発行する").click()
        link = owner.locator("#one-time-link").input_value()
        keep_screenshot(owner, tmp_path / "reset-link.png")

        member.goto(link)
        expect(member.locator("h1")).to_have_text("パスワードの再設定")
        member.fill("input[name=password]", "reset-by-link-22")
        member.fill("input[name=password_confirm]", "reset-by-link-22")
        member.get_by_role("button", name="パスワードを設定").click()
        expect(member.get_by_role("alert")).to_contain_text("パスワードを設定しました。")
        log_in(member, base_url, "user@demo.example.jp", "reset-by-link-22")
        member.goto(link)
        expect(member.locator("main")).to_contain_text("すでに使われています")
        keep_screenshot(member, tmp_path / "reset-link-used.png")
    expected = [error for error in errors if "status of 404" in error and "/password/reset/" in error]
    assert len(expected) == 1  # the used link's own answer; nothing else failed
    assert_only_portal(requests, [error for error in errors if error not in expected], base_url)
