"""Every member's link, visible: the admins' overview, the own-link banner, home, confirmations, sync timing."""
import re
from datetime import timedelta


from portal.extensions import db
from portal.mailbox import services
from portal.models import FolderRole, LinkState, MailboxLink, MailSource, MembershipState, Role, utcnow
from tests.factories import enable_email, make_account, make_link, make_member, make_message

INTERVAL = timedelta(minutes=3)


def set_state(link: MailboxLink, state: LinkState, error: str | None = None) -> None:
    """Put a link in a state as a failed pass would."""
    link.state, link.last_error, link.last_error_at = state, error, utcnow() if error else None
    db.session.commit()


def row_of(page: str, name: str) -> str:
    """The overview's table row that names the member."""
    rows = re.findall(r"<tr data-state=.*?</tr>", page, flags=re.S)
    [row] = [row for row in rows if name in row]
    return row


def test_overview_lists_every_active_member_with_state_badges_and_counts(client, auth):
    """未連携, 連携中, エラー, 要再認証 and 解除済み (reason and time), badges, counts per state, 7-day imports."""
    account, owner = make_account()
    enable_email(account, owner)
    never = make_member(account, Role.USER)
    linked, failing, reauth, stopped = (make_member(account, Role.USER) for _ in range(4))
    active_link = make_link(linked)
    set_state(make_link(failing), LinkState.ERROR, "サーバーに接続できませんでした。")
    set_state(make_link(reauth), LinkState.REAUTH, "ログインが拒否されました。")
    stopped_link = make_link(stopped)
    auth.login_member(owner)
    services.unlink_member_link(db.session, stopped, stopped_link, utcnow())
    message = make_message(account, member=linked)
    db.session.add(MailSource(message_id=message.id, link_id=active_link.id, folder_role=FolderRole.INBOX,
                              uidvalidity=1, uid=7, seen_at=utcnow()))
    old = make_message(account, member=linked)
    db.session.add(MailSource(message_id=old.id, link_id=active_link.id, folder_role=FolderRole.INBOX,
                              uidvalidity=1, uid=8, seen_at=utcnow() - timedelta(days=8)))
    db.session.commit()

    page = client.get("/settings/mailbox/links").get_data(as_text=True)

    assert "未連携" in row_of(page, never.user.name) and "text-bg-secondary" in row_of(page, never.user.name)
    assert "連携中" in row_of(page, linked.user.name) and "text-bg-success" in row_of(page, linked.user.name)
    assert "エラー" in row_of(page, failing.user.name) and "サーバーに接続できませんでした。" in row_of(page, failing.user.name)
    assert "要再認証" in row_of(page, reauth.user.name) and "再認証まで停止中" in row_of(page, reauth.user.name)
    stopped_row = row_of(page, stopped.user.name)
    assert "解除済み" in stopped_row and "本人が連携を解除しました" in stopped_row
    assert re.search(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}", stopped_row)
    assert re.search(r">1<span class=\"small text-muted\"> 通", row_of(page, linked.user.name))  # the 8-day-old one is out
    counts = dict(re.findall(r'data-state="(\w+)">.*?<span class="fs-5 fw-semibold ms-1">(\d+)</span>', page, re.S))
    assert counts == {"none": "2", "active": "1", "error": "1", "reauth": "1", "unlinked": "1"}  # the owner is 未連携 too
    assert "新着メールは3分おきに取り込まれます" in page


def test_overview_shows_a_disabled_members_stopped_link_and_other_accounts_never(client, auth):
    """A member disabled with a link stays listed as 解除済み with the reason; no other account's member appears."""
    account, owner = make_account()
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    make_link(member)
    quiet = make_member(account, Role.USER, state=MembershipState.DISABLED)
    other, other_owner = make_account()
    auth.login_member(owner)
    client.post(f"/settings/users/{member.id}/disable")
    page = client.get("/settings/mailbox/links").get_data(as_text=True)
    row = row_of(page, member.user.name)
    assert "解除済み" in row and "ユーザーが無効化されたため、連携を解除しました" in row and "無効" in row
    assert quiet.user.name not in page  # disabled and never linked: nothing to show
    assert other_owner.user.name not in page


def test_next_sync_follows_the_interval_the_backoff_and_stops_at_reauth():
    """Active: one interval after the last pass; エラー: after the backoff; 要再認証 and unlinked: none."""
    now = utcnow()
    link = MailboxLink(state=LinkState.ACTIVE, last_synced_at=now - timedelta(minutes=1), linked_at=now)
    assert services.next_sync_at(link, INTERVAL, now) == now + timedelta(minutes=2)
    assert services.freshness(link, INTERVAL, now) == "fresh"
    link.last_synced_at = now - timedelta(minutes=30)
    assert services.next_sync_at(link, INTERVAL, now) == now + INTERVAL  # overdue: the scheduler's next run
    assert services.freshness(link, INTERVAL, now) == "stale"
    link.state, link.next_attempt_at = LinkState.ERROR, now + timedelta(minutes=10)
    assert services.next_sync_at(link, INTERVAL, now) == now + timedelta(minutes=10)
    link.state = LinkState.REAUTH
    assert services.next_sync_at(link, INTERVAL, now) is None and services.freshness(link, INTERVAL, now) == ""
    link.state = LinkState.UNLINKED
    assert services.next_sync_at(link, INTERVAL, now) is None


def test_a_plain_user_cannot_see_the_overview(client, auth):
    """Only owners and admins see every member's link."""
    account, owner = make_account()
    for role, status in ((Role.USER, 403), (Role.MANAGER, 403), (Role.ADMIN, 200)):
        auth.login_member(make_member(account, role))
        assert client.get("/settings/mailbox/links").status_code == status
        auth.logout()


def test_banner_on_every_page_for_reauth_and_error_links_only(client, auth):
    """要再認証 and エラー put a banner with a link to fix it on every page; 連携中 does not."""
    account, owner = make_account()
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    link = make_link(member)
    auth.login_member(member)
    pages = ["/", "/customers", "/mails", "/settings", "/settings/mailbox"]
    for path in pages:
        assert 'id="link-banner"' not in client.get(path).get_data(as_text=True), path
    set_state(link, LinkState.REAUTH, "ログインが拒否されました。")
    for path in pages:
        page = client.get(path).get_data(as_text=True)
        assert 'id="link-banner"' in page and "要再認証" in page and 'href="/settings/mailbox"' in page, path
    set_state(link, LinkState.ERROR, "サーバーに接続できませんでした。")
    assert "エラー" in client.get("/customers").get_data(as_text=True)
    auth.logout()
    auth.login_member(owner)  # a colleague's broken link is not the owner's banner
    assert 'id="link-banner"' not in client.get("/").get_data(as_text=True)


def test_home_shows_the_mail_feature_and_the_own_link(client, auth):
    """オフ with a pointer to 機能契約; then オン with 未連携, then 連携中."""
    account, owner = make_account()
    auth.login_member(owner)
    page = client.get("/").get_data(as_text=True)
    assert 'id="mail-status"' in page and "オフ" in page and "/settings/features" in page
    enable_email(account, owner)
    page = client.get("/").get_data(as_text=True)
    assert re.search(r'id="own-link-state">未連携<', page)
    make_link(owner)
    assert re.search(r'id="own-link-state">連携中<', client.get("/").get_data(as_text=True))


def test_disable_and_delete_confirmations_name_the_unlink_and_say_it_happened(client, auth):
    """The confirmation names the link that will stop; the success message says it was unlinked."""
    account, owner = make_account()
    enable_email(account, owner)
    member, other = make_member(account, Role.USER), make_member(account, Role.USER)
    make_link(member, email="linked@example.jp")
    make_link(other, email="other@example.jp")
    auth.login_member(owner)
    for target, change, email in ((member, "disable", "linked@example.jp"), (other, "delete", "other@example.jp")):
        page = client.get(f"/settings/users/{target.id}/{change}").get_data(as_text=True)
        assert f"このユーザーのメールボックス連携（{email}）は解除されます" in page
        done = client.post(f"/settings/users/{target.id}/{change}", follow_redirects=True).get_data(as_text=True)
        assert f"メールボックス連携（{email}）を解除しました" in done
    plain = make_member(account, Role.USER)
    assert "解除されます" not in client.get(f"/settings/users/{plain.id}/disable").get_data(as_text=True)
    done = client.post(f"/settings/users/{plain.id}/disable", follow_redirects=True).get_data(as_text=True)
    assert "無効化しました" in done and "連携" not in done.split("無効化しました")[1][:20]


def test_own_link_page_says_when_mail_comes_in_and_disables_sync_at_reauth(client, auth):
    """「新着メールは3分おきに取り込まれます」, the last and next pass; 今すぐ同期 disabled and refused at 要再認証."""
    account, owner = make_account()
    enable_email(account, owner)
    link = make_link(owner)
    auth.login_member(owner)
    page = client.get("/settings/mailbox").get_data(as_text=True)
    assert "新着メールは3分おきに取り込まれます" in page and 'id="next-sync"' in page and 'id="last-sync"' in page
    assert re.search(r'<button type="submit" class="btn btn-primary"><i class="bi bi-arrow-repeat"', page)
    set_state(link, LinkState.REAUTH, "ログインが拒否されました。")
    page = client.get("/settings/mailbox").get_data(as_text=True)
    assert re.search(r'<button type="submit" class="btn btn-primary" disabled[^>]*><i class="bi bi-arrow-repeat"', page)
    assert "再認証するまで停止しています" in page
    refused = client.post("/settings/mailbox/sync", follow_redirects=True).get_data(as_text=True)
    assert "要再認証のため同期できません" in refused


def test_interval_text_follows_the_setting(make_app, app):
    """The sentence comes from SYNC_INTERVAL_SECONDS, not a fixed 3."""
    other = make_app(SYNC_INTERVAL_SECONDS=600)
    every = other.jinja_env.filters["every"]
    assert (every(600), every(180), every(3600), every(90)) == ("10分おき", "3分おき", "1時間おき", "90秒おき")


def test_import_log_shows_to_as_well_as_from(client, auth):
    """「なぜ取り込まれないのか」 has a To column, so sent mail can be checked."""
    from portal.models import ImportLogEntry
    account, owner = make_account()
    enable_email(account, owner)
    link = make_link(owner)
    db.session.add(ImportLogEntry(link_id=link.id, folder_role=FolderRole.SENT, uid=3, reason="no_customer",
                                  subject="ご案内", from_address=owner.user.email,
                                  to_addresses="someone@unknown.example", received_at=utcnow()))
    db.session.commit()
    auth.login_member(owner)
    for path in ("/settings/mailbox", f"/settings/mailbox/links/{link.id}"):
        page = client.get(path).get_data(as_text=True)
        assert "<th>To</th>" in page and "someone@unknown.example" in page, path


def test_features_page_shows_next_steps_after_mail_is_turned_on(client, auth):
    """Right after メール is on: 1. 推奨設定, 2. each member links, both linked; gone once everyone is linked."""
    account, owner = make_account()
    auth.login_member(owner)
    assert 'id="next-steps"' not in client.get("/settings/features").get_data(as_text=True)
    enable_email(account, owner)
    page = client.get("/settings/features").get_data(as_text=True)
    steps = page[page.index('id="next-steps"'):]
    assert steps.index('href="/settings/mailbox-servers"') < steps.index('href="/settings/mailbox"')
    assert "連携済み: 0 / 1人" in steps
    make_link(owner)
    assert 'id="next-steps"' not in client.get("/settings/features").get_data(as_text=True)
