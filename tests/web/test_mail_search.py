"""Text search of the mail list through the trigram index (FTS5 on SQLite, pg_trgm on PostgreSQL)."""
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import delete, select, text, update

from portal.extensions import db
from portal.mails import search
from portal.models import Direction, MailCustomer, MailMessage
from tests.factories import make_account, make_customer, make_message

BASE = datetime(2026, 9, 1, 3, 0, tzinfo=timezone.utc)
WINDOW_NOTICE = "新しい順に"


def _rows(response) -> list[str]:
    """The subject column of the mail list, top to bottom."""
    soup = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    return [row.find_all("td")[4].get_text(strip=True) for row in soup.select("table.mail-list tbody tr")
            if len(row.find_all("td")) > 4]


def _search(client, query: str, **args):
    """GET the mail list with a keyword; the page must render."""
    response = client.get("/mails", query_string={"q": query, **args})
    assert response.status_code == 200, response.status_code
    return response


@pytest.fixture
def mailbox(client, app, auth):
    """An account with one customer, its owner signed in; returns (account, customer, add) where add stores mail.

    Searches go to the index at once (newest_rows=1): a handful of test messages would all be found by the
    first step, LIKE over the newest messages, and the index would never be asked.
    """
    app.config["SEARCH_LIMITS"] = {"newest_rows": 1}
    account, owner = make_account()
    customer = make_customer(account)
    auth.login_member(owner)
    hours = iter(range(1000))

    def add(subject: str, text: str | None = "", html: str | None = None, **kwargs) -> MailMessage:
        """A message one hour newer than the previous one."""
        return make_message(account, [customer], subject=subject, text=text, html=html,
                            received_at=BASE + timedelta(hours=next(hours)), **kwargs)

    return account, customer, add


def test_finds_japanese_and_ascii_words_in_subjects_and_bodies(client, mailbox):
    """Japanese words in subject, text body and HTML-only body; ASCII words in any case."""
    _, _, add = mailbox
    add("お見積りのご依頼", "よろしくお願いします")
    add("納期の確認", "納品予定日は来週の水曜日です")
    add("Invoice", "Please find INV-2026-0042 attached.")
    add("ご連絡", None, html="<p>本件は<b>特急対応</b>でお願いします</p>")
    assert _rows(_search(client, "見積り")) == ["お見積りのご依頼"]
    assert _rows(_search(client, "納品予定日")) == ["納期の確認"]
    assert _rows(_search(client, "inv-2026")) == ["Invoice"]
    assert _rows(_search(client, "INVOICE")) == ["Invoice"]
    assert _rows(_search(client, "特急対応")) == ["ご連絡"]
    empty = _search(client, "存在しない語句")
    assert _rows(empty) == [] and "条件に一致するメールはありません" in empty.get_data(as_text=True)


def test_every_word_must_match_somewhere(client, mailbox):
    """Words split at spaces (full-width too) must all occur, in the subject or the body."""
    _, _, add = mailbox
    add("見積書の送付", "山田様 よろしくお願いします")
    add("見積書の再送", "佐藤様 よろしくお願いします")
    add("請求書の送付", "山田様 お世話になります")
    assert _rows(_search(client, "見積書 山田様")) == ["見積書の送付"]
    assert _rows(_search(client, "山田様\u3000送付")) == ["請求書の送付", "見積書の送付"]
    assert _rows(_search(client, "見積書 山田様 存在しない")) == []


def test_search_is_newest_first_and_pages_with_next(client, app, mailbox):
    """21 matches: 20 newest first on page 1, the oldest behind 次へ; the index order plays no part."""
    _, _, add = mailbox
    app.config["PER_PAGE"] = 20
    for index in range(21):
        add(f"特急{index:02d}", "特急対応でお願いします")
    add("通常", "通常対応です")
    first = _search(client, "特急対応")
    assert _rows(first) == [f"特急{index:02d}" for index in range(20, 0, -1)]
    soup = BeautifulSoup(first.get_data(as_text=True), "html.parser")
    second = client.get(soup.find("a", string="次へ")["href"])
    assert _rows(second) == ["特急00"]


PATHS = {
    "newest messages": {"newest_rows": 500},
    "index, sorted by date": {"newest_rows": 1, "sorted_matches": 100},
    "index, then the list walked": {"newest_rows": 1, "sorted_matches": 2},
}


@pytest.mark.parametrize("limits", PATHS.values(), ids=PATHS.keys())
def test_every_search_path_gives_the_same_pages(client, app, mailbox, limits):
    """However the search reads (see services.search_page), the rows, their order and the paging are the same."""
    account, customer, add = mailbox
    app.config.update(PER_PAGE=3, SEARCH_LIMITS=limits)
    other_account, _ = make_account()
    for index in range(5):
        add(f"見積{index}", "お見積書を添付します" if index != 2 else "別件です")
        make_message(other_account, [make_customer(other_account)], subject=f"他社{index}",
                     text="お見積書を添付します", received_at=BASE + timedelta(days=1, hours=index))
    add("送信済み", "お見積書を添付します", direction=Direction.SENT)
    assert _rows(_search(client, "お見積書")) == ["送信済み", "見積4", "見積3"]
    assert _rows(_search(client, "お見積書", page=2)) == ["見積1", "見積0"]
    assert _rows(_search(client, "お見積書", direction="received")) == ["見積4", "見積3", "見積1"]
    assert _rows(_search(client, "お見積書", customer=customer.id, page=2)) == ["見積1", "見積0"]
    assert _rows(_search(client, "お見積書 見積3")) == ["見積3"]  # a short word narrows the index's matches
    assert _rows(_search(client, "存在しない語句")) == []


def test_short_words_read_only_the_newest_messages_and_say_so(client, app, mailbox):
    """1-2 character words: LIKE over the newest window of the list, with a notice; 3 characters use the index."""
    _, _, add = mailbox
    app.config["SEARCH_LIMITS"] = {"short_word_window": 3, "newest_rows": 1}
    add("古い見積", "堀様 A-1 型の件")
    for index in range(3):
        add(f"新しい連絡{index}", "見積は別途お送りします" if index == 1 else "ご確認ください")
    two = _search(client, "見積")
    assert _rows(two) == ["新しい連絡1"]
    notice = BeautifulSoup(two.get_data(as_text=True), "html.parser").select_one("[role=status]").get_text()
    assert "3件" in notice and WINDOW_NOTICE in notice and "3文字以上" in notice
    assert _rows(_search(client, "堀")) == []  # one character, only in the oldest message
    assert _rows(_search(client, "A-1")) == []  # symbols do not count: two letters or digits
    three = _search(client, "古い見積")
    assert _rows(three) == ["古い見積"] and WINDOW_NOTICE not in three.get_data(as_text=True)
    # A long word takes the search through the whole history; the short word then narrows its matches.
    both = _search(client, "堀 型の件")
    assert _rows(both) == ["古い見積"] and WINDOW_NOTICE not in both.get_data(as_text=True)
    app.config["SEARCH_LIMITS"] = {"short_word_window": 10, "newest_rows": 1}
    assert _rows(_search(client, "堀")) == ["古い見積"]
    assert _rows(_search(client, "a-1")) == ["古い見積"]
    # With more index matches than are sorted, a short word could be rare: the window again, not a full walk.
    app.config["SEARCH_LIMITS"] = {"short_word_window": 3, "newest_rows": 1, "sorted_matches": 0}
    many = _search(client, "堀 型の件")
    assert _rows(many) == [] and WINDOW_NOTICE in many.get_data(as_text=True)


def test_edited_and_deleted_messages_follow_the_index(client, mailbox):
    """The index follows edits and deletes made through the ORM and through bulk statements alike."""
    account, customer, add = mailbox
    edited = add("仮の件名", "最初の本文です")
    bulk_edited = add("一括で変わる件名", "一括前の本文")
    removed = add("消えるメール", "削除予定の本文")
    bulk_removed = add("一括で消えるメール", "一括削除予定の本文")
    edited.subject, edited.text_body = "正式な件名", "書き換えた本文です"
    db.session.commit()
    db.session.execute(update(MailMessage).where(MailMessage.id == bulk_edited.id)
                       .values(text_body=None, html_body="<p>差し替えたHTML本文</p>"))
    db.session.commit()
    assert _rows(_search(client, "仮の件名")) == [] and _rows(_search(client, "最初の本文")) == []
    assert _rows(_search(client, "正式な件名")) == ["正式な件名"]
    assert _rows(_search(client, "書き換えた本文")) == ["正式な件名"]
    assert _rows(_search(client, "一括前の本文")) == []
    assert _rows(_search(client, "差し替えたHTML")) == ["一括で変わる件名"]

    db.session.execute(delete(MailCustomer).where(MailCustomer.message_id.in_([removed.id, bulk_removed.id])))
    db.session.delete(removed)
    db.session.commit()
    db.session.execute(delete(MailMessage).where(MailMessage.id == bulk_removed.id))
    db.session.commit()
    assert _rows(_search(client, "削除予定の本文")) == []
    assert db.session.scalar(select(MailMessage.id).where(MailMessage.id == removed.id)) is None
    # SQLite hands a deleted highest id out again: the new message must be found by its own words only.
    reused = make_message(account, [customer], subject="後から届いたメール", text="新しい本文",
                          received_at=BASE + timedelta(days=2))
    assert _rows(_search(client, "削除予定")) == []
    assert _rows(_search(client, "新しい本文")) == ["後から届いたメール"]
    if db.engine.dialect.name == "sqlite":
        assert reused.id in (removed.id, bulk_removed.id)


def test_query_syntax_and_wildcards_are_plain_text(client, mailbox):
    """Quotes, FTS operators and LIKE wildcards are searched for as typed, never interpreted."""
    _, _, add = mailbox
    add('Re: 100% "完了" *重要*', "進捗は100%です")
    add("100件の報告", "NEAR(a b) AND OR NOT")
    add("割引", "1000円引き")
    assert _rows(_search(client, "100%")) == ['Re: 100% "完了" *重要*']
    assert _rows(_search(client, '"完了"')) == ['Re: 100% "完了" *重要*']
    assert _rows(_search(client, "*重要*")) == ['Re: 100% "完了" *重要*']
    assert _rows(_search(client, "NEAR(a")) == ["100件の報告"]
    assert _rows(_search(client, "AND OR NOT")) == ["100件の報告"]
    assert _rows(_search(client, "10_0")) == []
    assert _rows(_search(client, "\\%")) == []


def test_another_accounts_mail_is_never_found(client, mailbox):
    """The index is shared by every account; results are the signed-in account's only, in each plan."""
    _, _, add = mailbox
    other_account, _ = make_account()
    make_message(other_account, [make_customer(other_account)], subject="他社の秘密", text="極秘の取引条件")
    add("自社のメール", "通常の連絡")
    for query in ("極秘の取引条件", "他社の秘密", "極秘", "秘"):
        assert _rows(_search(client, query)) == []


def test_words_the_index_cannot_narrow_in_time_search_the_newest_messages(client, app, mailbox, monkeypatch):
    """When the index lookup runs out of time, the newest messages are searched instead, and the page says so."""
    _, _, add = mailbox
    app.config["SEARCH_LIMITS"] = {"short_word_window": 2, "newest_rows": 1}
    add("古い連絡", "ご連絡いたしました")
    add("新しい連絡", "ご連絡いたしました")
    add("最新", "別件です")

    def too_slow(*args, **kwargs):
        """The index lookup as it behaves for a phrase of very common characters at a million messages."""
        raise search.SearchTimeout

    monkeypatch.setattr(search, "index_matches", too_slow)
    response = _search(client, "ご連絡いたしました")
    assert _rows(response) == ["新しい連絡"]
    notice = BeautifulSoup(response.get_data(as_text=True), "html.parser").select_one("[role=status]").get_text()
    assert "索引では絞り込めない" in notice and "2件" in notice and "特徴のある語" in notice


def test_a_search_that_runs_out_of_time_says_so(client, app, mailbox, monkeypatch):
    """A walk past a common word's matches that takes too long stops with a message, not an error page."""
    _, _, add = mailbox
    app.config["SEARCH_LIMITS"] = {"newest_rows": 1, "sorted_matches": 0}
    add("連絡", "ご連絡いたしました")
    add("最新", "別件です")
    real_time_limit = search.time_limit
    calls = []

    @contextmanager
    def walk_too_slow(session, milliseconds):
        """Let the index lookup pass; the walk after it takes too long."""
        calls.append(milliseconds)
        with real_time_limit(session, milliseconds):
            yield
            if len(calls) == 2:
                raise search.SearchTimeout

    monkeypatch.setattr(search, "time_limit", walk_too_slow)
    response = _search(client, "ご連絡いたしました")
    assert _rows(response) == [] and "時間がかかりすぎたため中断しました" in response.get_data(as_text=True)
    assert len(calls) == 2


def test_time_limit_stops_a_slow_statement_and_leaves_the_session_usable(app):
    """The database itself stops the statement; afterwards the transaction works and no limit is left behind."""
    slow = (text("SELECT pg_sleep(2)") if db.engine.dialect.name == "postgresql" else
            text("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
                 "SELECT count(*) FROM n"))
    account, _ = make_account()
    with pytest.raises(search.SearchTimeout):
        with search.time_limit(db.session, 50):
            db.session.execute(slow)
    assert db.session.scalar(select(MailMessage.id).where(MailMessage.account_id == account.id)) is None
    with search.time_limit(db.session, 5_000):
        assert db.session.scalar(text("SELECT 1")) == 1
    if db.engine.dialect.name == "postgresql":
        assert db.session.scalar(text("SHOW statement_timeout")) == "0"
