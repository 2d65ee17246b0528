"""End-to-end: every member's link visible, the 操作履歴 sentence, the own-link banner, in Debian's Chromium."""
import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import LinkState, Role, utcnow
from tests.e2e.browser import assert_only_portal, chromium_page, keep_screenshot, log_in, watch
from tests.factories import PASSWORD, enable_email, make_account, make_link, make_member

pytestmark = pytest.mark.browser


def seed_team(app) -> dict:
    """An account with メール on: an admin 山田 太郎 and a linked user 高橋 美咲; returns their addresses."""
    with app.app_context():
        account, owner = make_account("株式会社デモ")
        enable_email(account, owner)
        admin = make_member(account, Role.ADMIN, email="yamada@demo.example.jp")
        admin.user.name = "山田 太郎"
        member = make_member(account, Role.USER, email="takahashi@demo.example.jp")
        member.user.name = "高橋 美咲"
        db.session.commit()
        make_link(member, email="takahashi@demo.example.jp")
        db.session.remove()
    return {"admin": "yamada@demo.example.jp", "member": "takahashi@demo.example.jp"}


def test_admin_disables_a_linked_member_and_sees_the_unlink_everywhere(live_server, tmp_path):
    """The confirmation names the unlink; the overview shows 解除済み with the reason; 操作履歴 has the sentence."""
    app, base_url = live_server
    people = seed_team(app)
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, people["admin"], PASSWORD)
        page.goto(f"{base_url}/settings/mailbox/links")
        row = page.locator("#member-links tbody tr", has_text="高橋 美咲")
        expect(row.locator(".link-state")).to_have_text("連携中")
        keep_screenshot(page, tmp_path / "member-links-before.png")

        page.goto(f"{base_url}/settings/users")
        page.locator("tr", has_text="高橋 美咲").get_by_role("link", name="無効化").click()
        expect(page.locator("h1")).to_have_text("ユーザーを無効化")
        expect(page.locator("#unlink-notice")).to_contain_text(
            "このユーザーのメールボックス連携（takahashi@demo.example.jp）は解除されます")
        keep_screenshot(page, tmp_path / "disable-member-confirm.png")
        page.get_by_role("button", name="はい、無効化します").click()
        expect(page.get_by_role("alert").first).to_contain_text(
            "高橋 美咲さんを無効化しました。メールボックス連携（takahashi@demo.example.jp）を解除しました。")

        page.goto(f"{base_url}/settings/mailbox/links")
        row = page.locator("#member-links tbody tr", has_text="高橋 美咲")
        expect(row.locator(".link-state")).to_have_text("解除済み")
        expect(row.locator(".unlink-reason")).to_contain_text("ユーザーが無効化されたため、連携を解除しました")
        expect(page.locator('.link-health-count[data-state="unlinked"]')).to_contain_text("1")
        keep_screenshot(page, tmp_path / "member-links-unlinked.png")

        page.goto(f"{base_url}/settings/audit")
        expect(page.locator("#audit-log")).to_contain_text(
            "山田 太郎 が 高橋 美咲 を無効化しました（メールボックス連携を自動解除）")
        keep_screenshot(page, tmp_path / "audit-log.png")
        page.locator("#kind").select_option(label="メールボックス連携")
        page.get_by_role("button", name="絞り込む").click()
        expect(page.locator(".audit-sentence").first).to_contain_text("ユーザーの無効化による自動解除")
        assert_only_portal(requests, errors, base_url)


def test_a_reauth_link_shows_its_banner_on_every_page(live_server, tmp_path):
    """要再認証: a banner with a link to fix it on each screen the member opens; 今すぐ同期 is disabled."""
    app, base_url = live_server
    people = seed_team(app)
    with app.app_context():
        from portal.models import MailboxLink
        link = db.session.query(MailboxLink).one()
        link.state, link.last_error, link.last_error_at = LinkState.REAUTH, "ログインが拒否されました。", utcnow()
        db.session.commit()
        db.session.remove()
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, people["member"], PASSWORD)
        for path in ("/", "/customers", "/mails", "/templates", "/automations", "/settings"):
            page.goto(base_url + path)
            expect(page.locator("#link-banner")).to_contain_text("要再認証")
        keep_screenshot(page, tmp_path / "reauth-banner.png")
        page.goto(base_url + "/")
        expect(page.locator("#own-link-state")).to_have_text("要再認証")
        keep_screenshot(page, tmp_path / "home-own-link.png")
        page.locator("#link-banner").get_by_role("link", name="再認証する").click()
        expect(page.locator("h1")).to_have_text("メールボックス連携")
        expect(page.get_by_role("button", name="今すぐ同期")).to_be_disabled()
        expect(page.locator("#sync-interval")).to_have_text("新着メールは3分おきに取り込まれます。")
        keep_screenshot(page, tmp_path / "mailbox-reauth.png")
        assert_only_portal(requests, errors, base_url)


def test_features_page_shows_next_steps_and_the_volume_chart(live_server, tmp_path):
    """With メール on and a member still unlinked: the linked next steps, and the 12-month chart drawn inline."""
    app, base_url = live_server
    people = seed_team(app)
    with chromium_page() as page:
        requests, errors = watch(page)
        log_in(page, base_url, people["admin"], PASSWORD)
        page.goto(f"{base_url}/settings/features")
        steps = page.locator("#next-steps")
        expect(steps).to_contain_text("連携済み: 1 / 3人")
        expect(page.locator("#volume-chart g.volume-bar")).to_have_count(12)
        keep_screenshot(page, tmp_path / "features-next-steps-chart.png")
        steps.get_by_role("link", name="メールボックスサーバーの推奨設定").click()
        expect(page.locator("h1")).to_have_text("メールボックスサーバーの推奨設定")
        assert_only_portal(requests, errors, base_url)
