"""送受信メール: the list and its filters, the customer timeline, the thread page, attachments and the reply screen."""
from datetime import datetime, timedelta, timezone

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import event, select

from portal.customers.services import delete_customer
from portal.extensions import db
from portal.mailbox.services import live_link
from portal.mails import sending, services
from portal.mailsync.headers import decode_header_value
from portal.models import Direction, MailAttachment, MailDraft, MailMessage, MembershipState, Role, utcnow
from portal.users.services import disable_member
from tests.factories import enable_email, make_account, make_customer, make_link, make_member, make_message
from tests.fakes import FakeImap, FakeSmtp, environment


def _rows(response) -> list[str]:
    """The subject column of the mail list, top to bottom."""
    soup = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    return [row.find_all("td")[4].get_text(strip=True) for row in soup.select("table.mail-list tbody tr")
            if len(row.find_all("td")) > 4]


def test_list_shows_the_accounts_mail_newest_first_with_every_column(client, auth):
    """Date, direction, from, to, subject, customer and mailbox member are listed, newest first."""
    account, owner = make_account()
    customer = make_customer(account, name="山田 太郎", email="yamada@client.example")
    base = datetime(2026, 11, 1, 3, 0, tzinfo=timezone.utc)
    make_message(account, [customer], member=owner, subject="古いメール", received_at=base)
    make_message(account, [customer], member=owner, subject="新しいメール", direction=Direction.SENT,
                 to="yamada@client.example", received_at=base + timedelta(hours=1))
    other_account, _ = make_account()
    make_message(other_account, [make_customer(other_account)], subject="他社のメール")
    auth.login_member(owner)
    response = client.get("/mails")
    assert response.status_code == 200
    assert _rows(response) == ["新しいメール", "古いメール"]
    page = response.get_data(as_text=True)
    assert "2026/11/01 13:00" in page  # Japan time
    assert "送信" in page and "受信" in page and "山田 太郎" in page and owner.user.name in page


def test_filters_by_direction_member_customer_dates_and_text(client, auth):
    """Each filter narrows the list to what it names."""
    account, owner = make_account()
    colleague = make_member(account, Role.USER)
    first, second = make_customer(account), make_customer(account)
    day = datetime(2026, 10, 10, 1, 0, tzinfo=timezone.utc)
    make_message(account, [first], member=owner, subject="請求書のご案内", text="ご請求金額は一万円です",
                 received_at=day)
    make_message(account, [second], member=colleague, subject="打ち合わせ", direction=Direction.SENT,
                 received_at=day + timedelta(days=5))
    auth.login_member(owner)
    assert _rows(client.get("/mails?direction=sent")) == ["打ち合わせ"]
    assert _rows(client.get(f"/mails?member={colleague.id}")) == ["打ち合わせ"]
    assert _rows(client.get(f"/mails?customer={first.id}")) == ["請求書のご案内"]
    assert _rows(client.get("/mails?q=一万円")) == ["請求書のご案内"]
    assert _rows(client.get("/mails?date_from=2026-10-12&date_to=2026-10-31")) == ["打ち合わせ"]
    empty = client.get("/mails?q=存在しない語")
    assert _rows(empty) == [] and "条件に一致するメールはありません" in empty.get_data(as_text=True)


def test_bad_filter_input_gets_a_japanese_error_and_422(client, auth):
    """An unreadable date or a reversed range is explained beside the field."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.get("/mails?date_from=2026-13-40")
    assert response.status_code == 422
    assert "YYYY-MM-DD" in response.get_data(as_text=True)
    reversed_range = client.get("/mails?date_from=2026-10-10&date_to=2026-10-01")
    assert reversed_range.status_code == 422
    assert "終了日は開始日以降" in reversed_range.get_data(as_text=True)


def test_another_accounts_customer_as_filter_is_404(client, auth):
    """Filtering by another account's customer id reveals nothing: the same 404 as an id that does not exist."""
    account, owner = make_account()
    other_account, _ = make_account()
    auth.login_member(owner)
    elsewhere = make_customer(other_account)
    assert client.get(f"/mails?customer={elsewhere.id}").status_code == 404
    assert client.get(f"/mails?customer={elsewhere.id + 1000}").status_code == 404


def test_viewing_restriction_shows_names_but_no_link_and_profile_stays_403(client, auth):
    """Under 担当者閲覧制限 a plain user still sees all mail; others' customers are names, not links."""
    account, owner = make_account()
    user = make_member(account, Role.USER)
    mine = make_customer(account, name="自分の顧客", assigned=user)
    theirs = make_customer(account, name="他人の顧客", assigned=owner)
    make_message(account, [mine], subject="自分宛て")
    message = make_message(account, [theirs], subject="他人宛て")
    account.viewing_restricted = True
    db.session.commit()
    auth.login_member(user)
    response = client.get("/mails")
    assert set(_rows(response)) == {"自分宛て", "他人宛て"}
    soup = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    links = {a.get_text(strip=True) for a in soup.select("table.mail-list a")}
    assert "自分の顧客" in links and "他人の顧客" not in links
    assert "他人の顧客" in soup.get_text()
    assert client.get(f"/mails/{message.id}").status_code == 200
    assert client.get(f"/customers/{theirs.id}").status_code == 403


def test_mail_stays_after_customer_deleted_link_unlinked_and_member_disabled(client, auth):
    """History survives: 削除済みの顧客 is shown, the member's name stays."""
    account, owner = make_account()
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    make_link(member)
    customer = make_customer(account, name="消える顧客")
    message = make_message(account, [customer], member=member, subject="残るメール")
    delete_customer(db.session, None, customer, utcnow())
    disable_member(db.session, owner, member, utcnow())
    assert live_link(db.session, member.id) is None  # disabling the member unlinked the mailbox
    auth.login_member(owner)
    response = client.get("/mails")
    assert _rows(response) == ["残るメール"]
    page = response.get_data(as_text=True)
    assert "削除済みの顧客" in page and member.user.name in page
    assert client.get(f"/mails/{message.id}").status_code == 200


def test_list_uses_a_fixed_number_of_queries_however_many_rows(client, auth, app):
    """No query per row: customers and members are loaded in bulk."""
    account, owner = make_account()
    customers = [make_customer(account) for _ in range(3)]
    for index in range(15):
        make_message(account, [customers[index % 3]], member=owner, subject=f"件名{index}")
    auth.login_member(owner)
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        assert client.get("/mails").status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    mail_queries = [s for s in statements if "mail_" in s]
    assert len(mail_queries) <= 4, mail_queries


def test_customer_timeline_groups_threads_newest_first(client, auth):
    """The customer page lists the customer's threads, most recent first, with their messages."""
    account, owner = make_account()
    customer = make_customer(account, name="佐藤 花子")
    other = make_customer(account)
    base = datetime(2026, 9, 1, tzinfo=timezone.utc)
    old = make_message(account, [customer], subject="初回のご相談", text="はじめまして", received_at=base)
    make_message(account, [customer], subject="Re: 初回のご相談", text="ご返信ありがとうございます",
                 direction=Direction.SENT, received_at=base + timedelta(days=1), thread=old.thread)
    make_message(account, [customer], subject="別件", received_at=base + timedelta(days=2))
    make_message(account, [other], subject="他の顧客のメール", received_at=base + timedelta(days=3))
    auth.login_member(owner)
    page = client.get(f"/customers/{customer.id}").get_data(as_text=True)
    soup = BeautifulSoup(page, "html.parser")
    threads = soup.select(".timeline-thread")
    assert len(threads) == 2
    assert "別件" in threads[0].get_text() and "初回のご相談" in threads[1].get_text()
    assert "2件" in threads[1].get_text() and "ご返信ありがとうございます" in threads[1].get_text()
    assert "他の顧客のメール" not in page


def test_thread_page_shows_every_message_of_the_thread_in_order(client, auth):
    """Opening one message shows its whole conversation, oldest first; plain text as text."""
    account, owner = make_account()
    customer = make_customer(account)
    first = make_message(account, [customer], subject="ご質問", text="<b>太字ではない</b>",
                         received_at=datetime(2026, 9, 1, tzinfo=timezone.utc))
    second = make_message(account, [customer], subject="Re: ご質問", direction=Direction.SENT, text="回答です",
                          received_at=datetime(2026, 9, 2, tzinfo=timezone.utc), thread=first.thread)
    auth.login_member(owner)
    response = client.get(f"/mails/{second.id}")
    page = response.get_data(as_text=True)
    assert page.index(f'id="message-{first.id}"') < page.index(f'id="message-{second.id}"')
    assert "&lt;b&gt;太字ではない&lt;/b&gt;" in page
    assert "img-src 'self' data:;" in response.headers["Content-Security-Policy"]


def test_html_mail_is_sanitised_into_a_sandboxed_frame_with_remote_images_held_back(client, auth):
    """Scripts are gone, the frame is sandboxed without scripts, remote images wait for 「画像を表示」."""
    account, owner = make_account()
    html = ('<p>こんにちは</p><script>alert(1)</script>'
            '<img src="https://tracker.example/pixel.gif" alt="追跡">')
    message = make_message(account, [make_customer(account)], html=html, text=None)
    auth.login_member(owner)
    page = client.get(f"/mails/{message.id}").get_data(as_text=True)
    frame = BeautifulSoup(page, "html.parser").select_one("iframe.mail-frame")
    # Sandboxed: links may open a new tab, but no script runs and the frame is not the portal's origin.
    assert frame.has_attr("sandbox") and not {"allow-scripts", "allow-same-origin"} & set(frame["sandbox"])
    assert "こんにちは" in frame["srcdoc"] and "<script" not in frame["srcdoc"]
    assert "tracker.example" not in frame["srcdoc"]
    assert "画像を表示" in page
    shown = client.get(f"/mails/{message.id}?images=1")
    assert "tracker.example" in BeautifulSoup(shown.get_data(as_text=True), "html.parser").select_one(
        "iframe.mail-frame")["srcdoc"]
    assert "https:" in shown.headers["Content-Security-Policy"]


def test_inline_image_is_served_through_a_signed_account_checked_address(client, auth, app):
    """A cid: image becomes a signed URL; the same file without the signature, or another's, is 404."""
    account, owner = make_account()
    png = MailAttachment(filename="logo.png", content_type="image/png", size_bytes=4, content_id="logo@x",
                         inline=True, content=b"\x89PNG")
    message = make_message(account, [make_customer(account)], html='<img src="cid:logo@x">', text=None,
                           attachments=[png])
    auth.login_member(owner)
    srcdoc = BeautifulSoup(client.get(f"/mails/{message.id}").get_data(as_text=True), "html.parser").select_one(
        "iframe.mail-frame")["srcdoc"]
    url = BeautifulSoup(srcdoc, "html.parser").img["src"]
    path = url.split("://", 1)[1].split("/", 1)[1]
    auth.logout()
    image = client.get("/" + path)  # the sandboxed frame sends no cookie: the signature is the check
    assert image.status_code == 200 and image.data == b"\x89PNG"
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/mails/attachments/{png.id}/inline").status_code == 404
    assert client.get(f"/mails/attachments/{png.id}/inline?sig=forged").status_code == 404


def test_attachment_download_is_scoped_to_the_account(client, auth):
    """Members download their account's attachments; another account's attachment is 404."""
    account, owner = make_account()
    other_account, other_owner = make_account()
    pdf = MailAttachment(filename="見積書.pdf", content_type="application/pdf", size_bytes=5, content=b"%PDF-")
    make_message(account, [make_customer(account)], attachments=[pdf])
    auth.login_member(owner)
    response = client.get(f"/mails/attachments/{pdf.id}")
    assert response.status_code == 200 and response.data == b"%PDF-"
    assert "attachment" in response.headers["Content-Disposition"]
    auth.logout()
    auth.login_member(other_owner)
    assert client.get(f"/mails/attachments/{pdf.id}").status_code == 404


def test_another_accounts_thread_and_reply_are_404(client, auth):
    """Another account's message does not exist for anyone."""
    other_account, _ = make_account()
    message = make_message(other_account, [make_customer(other_account)])
    account, owner = make_account()
    auth.login_member(owner)
    assert client.get(f"/mails/{message.id}").status_code == 404
    assert client.get(f"/mails/{message.id}/reply").status_code == 404


def test_reply_screen_prefills_customer_subject_and_quote(client, auth):
    """「返信」 opens with the customer in To, 「Re: 件名」 and the quoted original."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    customer = make_customer(account, email="suzuki@client.example")
    message = make_message(account, [customer], subject="Re: 資料送付のお願い", text="資料をお送りください。")
    auth.login_member(owner)
    soup = BeautifulSoup(client.get(f"/mails/{message.id}/reply").get_data(as_text=True), "html.parser")
    assert soup.select_one("#to")["value"] == "suzuki@client.example"
    assert soup.select_one("#subject")["value"] == "Re: 資料送付のお願い"
    assert "> 資料をお送りください。" in soup.select_one("#body").get_text()


def test_reply_without_a_linked_mailbox_explains_and_points_to_linking(client, auth):
    """No link: a clear message, a link to メールボックス連携, and a send is refused with 409."""
    account, owner = make_account()
    enable_email(account, owner)  # with メール off the screen says the feature is off instead
    message = make_message(account, [make_customer(account)])
    auth.login_member(owner)
    page = client.get(f"/mails/{message.id}/reply").get_data(as_text=True)
    assert "メールボックスが連携されていないため、返信できません" in page and "/settings/mailbox" in page
    response = client.post(f"/mails/{message.id}/reply", data={
        "to": "a@client.example", "subject": "Re: x", "body": "本文", "action": "send"})
    assert response.status_code == 409
    assert db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT)) is None


def test_line_breaks_in_headers_are_refused_and_nothing_is_sent(client, auth):
    """CR/LF, encoded newlines and several addresses in To or Subject are form errors (422)."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    message = make_message(account, [make_customer(account)])
    auth.login_member(owner)
    for data in ({"to": "a@client.example", "subject": "Re: x\r\nBcc: spy@evil.example"},
                 {"to": "a@client.example", "subject": "=?utf-8?q?x=0D=0ABcc=3A_spy=40evil=2Eexample?="},
                 {"to": "a@client.example\nBcc: spy@evil.example", "subject": "Re: x"},
                 {"to": "a@client.example, spy@evil.example", "subject": "Re: x"}):
        response = client.post(f"/mails/{message.id}/reply", data={**data, "body": "本文", "action": "send"})
        assert response.status_code == 422, data
        page = response.get_data(as_text=True)
        assert "改行を含めることはできません" in page or "メールアドレス" in page
    assert db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT)) is None
    assert db.session.scalar(select(MailDraft)) is None


def test_smtp_failure_keeps_the_draft_and_explains_in_japanese(client, auth):
    """The link's SMTP server is unreachable: 502, the message in Japanese, the typed text kept as a draft."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)  # points at 127.0.0.1:587 where nothing listens in tests
    message = make_message(account, [make_customer(account)])
    auth.login_member(owner)
    typed = {"to": "a@client.example", "subject": "Re: お見積り", "body": "大切な長文の返信", "action": "send"}
    response = client.post(f"/mails/{message.id}/reply", data=typed)
    assert response.status_code == 502
    page = response.get_data(as_text=True)
    assert "SMTPサーバー" in page and "下書きとして保存しました" in page and "大切な長文の返信" in page
    again = client.get(f"/mails/{message.id}/reply").get_data(as_text=True)
    assert "送信できなかった下書きを復元しました" in again and "大切な長文の返信" in again
    assert db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT)) is None


def test_filter_members_keeps_disabled_members(app):
    """A disabled member's mail stays filterable by their name."""
    account, owner = make_account()
    member = make_member(account, Role.USER, state=MembershipState.DISABLED)
    assert member.id in {m.id for m in services.filter_members(db.session, account.id)}


def test_text_search_pages_forward_without_counting_every_body(client, auth):
    """A keyword search shows 次へ while more matches follow, and no total (that would read every body)."""
    account, owner = make_account()
    customer = make_customer(account)
    base = datetime(2026, 8, 1, tzinfo=timezone.utc)
    for index in range(21):
        make_message(account, [customer], subject=f"特急{index:02d}", text="特急対応でお願いします",
                     received_at=base + timedelta(hours=index))
    make_message(account, [customer], subject="通常", text="通常対応", received_at=base + timedelta(days=5))
    auth.login_member(owner)
    first = client.get("/mails?q=特急対応")
    assert _rows(first)[0] == "特急20" and len(_rows(first)) == 20
    soup = BeautifulSoup(first.get_data(as_text=True), "html.parser")
    assert "全" not in soup.select_one("p.text-muted.small.text-center").get_text()
    next_link = soup.find("a", string="次へ")["href"]
    second = client.get(next_link)
    assert _rows(second) == ["特急00"]
    assert BeautifulSoup(second.get_data(as_text=True), "html.parser").find("a", string="次へ")["href"] == "#"


def test_a_long_list_counts_only_so_far_and_says_so(client, app, auth):
    """Past the count cap the pager shows 「N件以上」 and no last page; nearer the end the exact total returns."""
    account, owner = make_account()
    customer = make_customer(account)
    base = datetime(2026, 8, 1, tzinfo=timezone.utc)
    for index in range(5):
        make_message(account, [customer], subject=f"連絡{index}", received_at=base + timedelta(hours=index))
    app.config.update(PER_PAGE=2, MAIL_LIST_COUNT_CAP=3)
    auth.login_member(owner)
    first = BeautifulSoup(client.get("/mails").get_data(as_text=True), "html.parser")
    assert "3件以上（1〜2件目）" in first.get_text() and "全" not in first.select_one("p.text-muted.small").get_text()
    assert [a.get_text() for a in first.select(".pagination a")] == ["前へ", "1", "2", "次へ"]
    second = BeautifulSoup(client.get("/mails?page=2").get_data(as_text=True), "html.parser")
    assert "全5件（3〜4件目）" in second.get_text()
    assert _rows(client.get("/mails?page=3")) == ["連絡0"]


def _fake_smtp(monkeypatch) -> FakeSmtp:
    """Send through a fake SMTP server (and accept the Sent copy) instead of the link's unreachable one."""
    smtp = FakeSmtp()
    monkeypatch.setattr(sending, "send_environment", lambda config: environment(smtp, FakeImap()))
    return smtp


def test_reply_page_title_is_text_and_the_script_loads_once(client, auth):
    """Issue 10 hole 16: no <script> inside the title block, so neither the tab nor the breadcrumb shows a tag."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    message = make_message(account, [make_customer(account)], subject="お見積りの件")
    auth.login_member(owner)
    soup = BeautifulSoup(client.get(f"/mails/{message.id}/reply").get_data(as_text=True), "html.parser")
    assert soup.title.get_text() == "返信: お見積りの件 | メール連携ポータル"
    assert soup.title.find("script") is None
    assert len(soup.select('script[src*="send-once.js"]')) == 1


def test_subject_that_only_mentions_escapes_is_sent(client, auth, monkeypatch):
    """Issue 10 hole 16: `\\n`, `%0a` and `=0A` written as text are not line breaks; the subject goes out as typed."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    message = make_message(account, [make_customer(account)])
    smtp = _fake_smtp(monkeypatch)
    auth.login_member(owner)
    subject = r"Re: C:\new フォルダ 100%0a =0A"
    response = client.post(f"/mails/{message.id}/reply", data={
        "to": "a@client.example", "subject": subject, "body": "本文", "action": "send"})
    assert response.status_code == 302
    assert decode_header_value(smtp.sent[0]["Subject"]) == subject
    assert db.session.scalar(select(MailMessage.subject).where(MailMessage.direction == Direction.SENT)) == subject


@pytest.mark.parametrize("original,expected", [
    ("Meeting Tomorrow", "Re: Meeting Tomorrow"),
    ("[重要] ＡＢＣ株式会社（株）の件", "Re: [重要] ＡＢＣ株式会社（株）の件"),
    ("Fwd: 資料", "Re: Fwd: 資料"),
    ("RE: お見積り", "RE: お見積り"),
    ("re: お見積り", "re: お見積り"),
    ("返信: ご相談", "返信: ご相談"),
])
def test_reply_subject_is_re_plus_the_subject_as_written(client, auth, original, expected):
    """Issue 10 hole 17: the customer sees their own subject; only a leading Re:/RE:/返信: is not doubled."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    message = make_message(account, [make_customer(account)], subject=original)
    auth.login_member(owner)
    soup = BeautifulSoup(client.get(f"/mails/{message.id}/reply").get_data(as_text=True), "html.parser")
    assert soup.select_one("#subject")["value"] == expected


def test_a_reply_stays_in_its_thread_whatever_its_subject(client, auth, monkeypatch):
    """Issue 10 hole 17: the threading key is not the subject line: a reply keeps the original's thread."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    message = make_message(account, [make_customer(account)], subject="Meeting Tomorrow")
    _fake_smtp(monkeypatch)
    auth.login_member(owner)
    assert client.post(f"/mails/{message.id}/reply", data={
        "to": "a@client.example", "subject": "Re: Meeting Tomorrow", "body": "本文", "action": "send"}
    ).status_code == 302
    reply = db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT))
    assert reply.subject == "Re: Meeting Tomorrow" and reply.thread_id == message.thread_id
