"""Words and small screens: role names, ユーザー, the customer form's import rule, 自動返信, the mail cards,
the server address, one title per preset page, and a 403 that says 操作 for a change."""
import re
from pathlib import Path

from bs4 import BeautifulSoup

from portal.extensions import db
from portal.models import Direction, Role, Security
from portal.policy import ROLE_LABELS
from tests.factories import enable_email, make_account, make_customer, make_link, make_member, make_message

PORTAL = Path(__file__).resolve().parents[2] / "portal"


def test_role_names_follow_the_help_page_and_no_screen_says_member():
    """オーナー, アドミン, マネージャー, ユーザー; 「メンバー」 appears in no template and no message."""
    assert list(ROLE_LABELS.values()) == ["オーナー", "アドミン", "マネージャー", "ユーザー"]
    saying_member = [str(path.relative_to(PORTAL)) for path in PORTAL.rglob("*")
                     if path.suffix in (".html", ".py") and "メンバー" in path.read_text(encoding="utf-8")]
    assert saying_member == []


def test_users_screen_shows_the_admin_role_as_admin(client, auth):
    """The member list and the role picker say アドミン."""
    account, owner = make_account()
    make_member(account, Role.ADMIN)
    auth.login_member(owner)
    page = client.get("/settings/users").get_data(as_text=True)
    assert "アドミン" in page and ">管理者<" not in page


def test_customer_form_reminds_that_only_later_mail_is_imported(client, auth):
    """The seed's rule: only mail sent or received after the customer is registered comes in."""
    account, owner = make_account()
    auth.login_member(owner)
    for path in ("/customers/new", f"/customers/{make_customer(account).id}/edit"):
        assert "取り込まれるのは、この顧客を登録した後に送受信したメールだけです" in client.get(path).get_data(as_text=True)


def test_automatic_replies_carry_a_badge_in_the_thread_the_timeline_and_the_list(client, auth):
    """Auto-Submitted or an out-of-office subject: 「自動返信」; an ordinary reply has none."""
    account, owner = make_account()
    enable_email(account, owner)
    customer = make_customer(account)
    auto = make_message(account, [customer], subject="不在のお知らせ")
    marked = make_message(account, [customer], subject="Re: ご提案")
    marked.auto_submitted = True
    plain = make_message(account, [customer], subject="ご提案ありがとうございます")
    db.session.commit()
    auth.login_member(owner)

    def badged(html: str) -> int:
        return len(BeautifulSoup(html, "html.parser").select(".auto-reply"))

    assert badged(client.get(f"/mails/{auto.id}").get_data(as_text=True)) == 1
    assert badged(client.get(f"/mails/{marked.id}").get_data(as_text=True)) == 1
    assert badged(client.get(f"/mails/{plain.id}").get_data(as_text=True)) == 0
    assert badged(client.get(f"/customers/{customer.id}").get_data(as_text=True)) == 2
    listing = BeautifulSoup(client.get("/mails").get_data(as_text=True), "html.parser")
    assert len(listing.select("table .auto-reply")) == 2 and len(listing.select(".mail-cards .auto-reply")) == 2
    assert "自動返信" in listing.select_one(".auto-reply").get_text()


def test_small_screens_get_mail_cards_with_date_direction_counterpart_and_subject(client, auth):
    """Each card: the date, 受信/送信, who the mail is with (From received, To sent), the subject, one link."""
    account, owner = make_account()
    enable_email(account, owner)
    customer = make_customer(account, email="client@client.example")
    make_message(account, [customer], subject="見積りのご依頼", sender="client@client.example")
    make_message(account, [customer], subject="お見積りを送ります", direction=Direction.SENT,
                 to="client@client.example")
    auth.login_member(owner)
    page = BeautifulSoup(client.get("/mails").get_data(as_text=True), "html.parser")
    cards = page.select(".mail-cards .mail-card")
    assert len(cards) == 2
    sent, received = (card.get_text(" ", strip=True) for card in cards)
    assert re.search(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2} 送信 client@client\.example お見積りを送ります", sent)
    assert re.search(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2} 受信 client@client\.example 見積りのご依頼", received)
    assert "d-sm-none" in page.select_one(".mail-cards")["class"]


def test_server_address_has_no_nested_brackets(client, auth):
    """「127.0.0.1:12143（なし（暗号化しない））」 becomes the address and a 暗号化なし badge."""
    account, owner = make_account()
    enable_email(account, owner)
    link = make_link(owner)
    link.imap_port, link.imap_security = 12143, Security.NONE
    db.session.commit()
    auth.login_member(owner)
    page = client.get("/settings/mailbox").get_data(as_text=True)
    assert "（なし（暗号化しない））" not in page
    assert re.search(r"127\.0\.0\.1:12143 <span class=\"badge[^\"]*\">暗号化なし</span>", page)


def test_add_and_edit_preset_pages_have_their_own_titles(client, auth):
    """追加 and 編集, not one 「追加/編集」 title for both."""
    from portal.presets.services import PresetData, create_preset
    from portal.models import AuthMethod
    account, owner = make_account()
    enable_email(account, owner)
    preset = create_preset(db.session, owner, PresetData(
        name="本社", imap_host="imap.example.jp", imap_port=993, imap_security=Security.SSL,
        smtp_host="smtp.example.jp", smtp_port=587, smtp_security=Security.STARTTLS,
        auth_method=AuthMethod.PASSWORD))
    auth.login_member(owner)
    new = client.get("/settings/mailbox-servers/new").get_data(as_text=True)
    edit = client.get(f"/settings/mailbox-servers/{preset.id}/edit").get_data(as_text=True)
    assert "<h1>メールボックスサーバーの推奨設定を追加</h1>" in new and "<title>メールボックスサーバーの推奨設定を追加 |" in new
    assert "<h1>メールボックスサーバーの推奨設定を編集</h1>" in edit and "追加/編集" not in edit


def test_forbidden_change_says_operation_and_forbidden_view_says_viewing(client, auth):
    """A user opening an edit screen or posting gets 操作権限がありません; a screen they may not see, 閲覧."""
    account, owner = make_account()
    enable_email(account, owner)
    auth.login_member(make_member(account, Role.USER))
    for response in (client.get("/settings/mailbox-servers/new"), client.post("/settings/mailbox-servers/new"),
                     client.get(f"/settings/users/{owner.id}/disable")):
        assert response.status_code == 403
        text = response.get_data(as_text=True)
        assert "操作権限がありません" in text and "閲覧" not in text
    viewing = client.get("/settings/audit")
    assert viewing.status_code == 403 and "閲覧権限がありません" in viewing.get_data(as_text=True)


def test_reply_screen_never_names_an_environment_variable(client, auth):
    """Without tracking configured: 「開封・クリックの計測は管理者の設定後に有効になります」, no variable name."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    customer = make_customer(account)
    message = make_message(account, [customer])
    auth.login_member(owner)
    for path in (f"/mails/{message.id}/reply", f"/mails/new?customer={customer.id}"):
        page = BeautifulSoup(client.get(path).get_data(as_text=True), "html.parser")
        text = page.select_one("main").get_text(" ", strip=True)
        assert "開封・クリックの計測は管理者の設定後に有効になります" in text, path
        assert not re.search(r"\b[A-Z]{2,}_[A-Z_]{2,}\b", text), path


def test_with_mail_off_the_reply_screen_says_the_feature_is_off(client, auth):
    """メール off: the reply and new-mail screens say the mail feature is off, not that the mailbox is unlinked."""
    from portal.features.services import set_feature
    from portal.models import EMAIL_FEATURE, utcnow
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    customer = make_customer(account)
    message = make_message(account, [customer])
    set_feature(db.session, owner, EMAIL_FEATURE, False, utcnow())
    auth.login_member(owner)
    page = client.get(f"/mails/{message.id}/reply").get_data(as_text=True)
    assert "メール機能がオフのため、返信できません" in page and "連携されていない" not in page
    refused = client.post(f"/mails/{message.id}/reply", data={"to": customer.email, "subject": "Re", "body": "本文",
                                                              "action": "send"})
    assert refused.status_code == 409 and "メール機能がオフのため、返信できません" in refused.get_data(as_text=True)
    new = client.get(f"/mails/new?customer={customer.id}").get_data(as_text=True)
    assert "メール機能がオフのため、送信できません" in new and "連携されていない" not in new


def test_smtp_without_auth_box_says_when_it_may_be_chosen(client, auth):
    """The link form's SMTP認証なし box carries its rule (TLS only) before anything is sent."""
    account, owner = make_account()
    enable_email(account, owner)
    auth.login_member(owner)
    page = BeautifulSoup(client.get("/settings/mailbox").get_data(as_text=True), "html.parser")
    box = page.find(id="smtp_no_auth").find_parent(class_="form-check")
    assert "SSL/TLS か STARTTLS で接続する場合だけ選べます" in box.get_text()
