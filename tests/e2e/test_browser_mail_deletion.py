"""End-to-end in Debian's Chromium: a manager deletes one message of a thread, then the rest of the thread."""
import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import MailMessage, MailTombstone, Role
from tests.e2e.browser import assert_only_portal, chromium_page, keep_screenshot, log_in, watch
from tests.factories import PASSWORD, enable_email, make_account, make_customer, make_member, make_message

pytestmark = pytest.mark.browser

FIRST, SECOND, OTHER = "お見積りのお願い", "Re: お見積りのお願い", "別件のご相談"


def seed(app) -> tuple[str, int]:
    """A manager and a customer's two-message thread plus another message; returns (login, first message id)."""
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        customer = make_customer(account, name="山田 太郎", email="yamada@client.example")
        first = make_message(account, [customer], member=owner, subject=FIRST, text="見積書をお願いします。")
        make_message(account, [customer], member=owner, subject=SECOND, text="承知しました。", thread=first.thread)
        make_message(account, [customer], member=owner, subject=OTHER)
        login, first_id = make_member(account, Role.MANAGER).user.email, first.id
        db.session.remove()
    return login, first_id


def test_manager_deletes_a_message_then_the_thread(live_server, tmp_path):
    """Trash icon → confirmation → 「はい、削除します」 leaves the other message; 削除 on the thread empties it."""
    app, base_url = live_server
    login, first_id = seed(app)
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, login, PASSWORD)
        page.goto(f"{base_url}/mails/{first_id}")
        expect(page.locator("article.mail-card")).to_have_count(2)

        page.get_by_role("link", name=f"「{FIRST}」を削除").click()
        expect(page.locator("h1")).to_have_text("メールの削除")
        expect(page.locator("main")).to_contain_text("メールサーバー（各ユーザーのメールソフト）のメールは削除されません")
        expect(page.get_by_role("list", name="削除するメール")).to_contain_text(FIRST)
        keep_screenshot(page, tmp_path / "mail-delete-confirm.png")
        page.get_by_role("button", name="はい、削除します").click()

        expect(page.get_by_role("alert")).to_contain_text("メールを1件削除しました。")
        expect(page.locator("article.mail-card")).to_have_count(1)
        expect(page.locator("article.mail-card")).to_contain_text("承知しました。")

        page.get_by_role("link", name="「このスレッドのメール 1件」を削除").click()
        expect(page.locator("h1")).to_have_text("スレッドの削除")
        page.get_by_role("button", name="はい、削除します").click()
        expect(page.locator("h1")).to_have_text("送受信メール")
        expect(page.get_by_role("alert")).to_contain_text("メールを1件削除しました。")
        expect(page.get_by_role("link", name=OTHER, exact=True)).to_be_visible()
        expect(page.get_by_role("link", name=FIRST, exact=True)).to_have_count(0)
        keep_screenshot(page, tmp_path / "mail-list-after-delete.png")
    assert_only_portal(requests, errors, base_url)
    with app.app_context():
        assert db.session.scalar(select(func.count(MailMessage.id))) == 1
        assert db.session.scalar(select(func.count(MailTombstone.id))) == 2
