"""Open and click tracking: public endpoints, one event per request, forged requests refused, summaries."""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from flask import render_template_string
from sqlalchemy import event, func, select

from portal.extensions import db
from portal.models import Direction, MailMessage, MailThread, Role, TrackedLink, TrackingEvent, TrackingKind, utcnow
from portal.tracking.routes import PIXEL
from portal.tracking.services import LinkClicks, TrackingSummary, tracking_summaries
from portal.tracking.tokens import CLICK_PATH, OPEN_PATH, click_token, new_tracking_id, open_token
from tests.factories import make_account, make_member

GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
THUNDERBIRD = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"


@dataclass
class Sent:
    """A portal-sent message with its tracked links."""

    message: MailMessage
    links: list[TrackedLink]


def make_sent(urls=("https://example.jp/price", "https://example.jp/faq"), tracked: bool = True,
              legacy: bool = False, member=None) -> Sent:
    """A tracked reply sent by a member (of a new account unless given), with one TrackedLink per URL (legacy:
    sent before tracking ids)."""
    if member is None:
        account, _ = make_account()
        member = make_member(account, Role.USER)
    account = member.account
    thread = MailThread(account_id=account.id, subject_key="お見積り")
    db.session.add(thread)
    db.session.flush()
    message = MailMessage(account_id=account.id, message_key=f"mid:{thread.id}@example.jp", thread_id=thread.id,
                          direction=Direction.SENT, subject="お見積り", received_at=utcnow(), tracked=tracked,
                          tracking_id=new_tracking_id() if tracked and not legacy else None,
                          membership_id=member.id, sent_by_membership_id=member.id)
    db.session.add(message)
    db.session.flush()
    links = [TrackedLink(message_id=message.id, position=position, url=url) for position, url in enumerate(urls)]
    db.session.add_all(links)
    db.session.commit()
    return Sent(message, links)


def tracking_id_of(message_id: int) -> str:
    """The message's tracking id (a random unknown one for a message that has none)."""
    message = db.session.get(MailMessage, message_id)
    return message.tracking_id if message is not None and message.tracking_id else new_tracking_id()


def open_url(app, message_id: int) -> str:
    """The tracking image address of a message."""
    return OPEN_PATH + open_token(app.config["SECRET_KEY"], tracking_id_of(message_id))


def click_url(app, message_id: int, link_id: int) -> str:
    """The tracked address of one link (the token names the message's tracking id and the link's place)."""
    position = db.session.get(TrackedLink, link_id).position
    return CLICK_PATH + click_token(app.config["SECRET_KEY"], tracking_id_of(message_id), position)


def tamper(token: str) -> str:
    """The token with one character of its signature changed (a middle one: every bit of it counts)."""
    payload, signature = token.rsplit(".", 1)
    middle = len(signature) // 2
    changed = "B" if signature[middle] == "A" else "A"
    return f"{payload}.{signature[:middle]}{changed}{signature[middle + 1:]}"


def events(message_id: int) -> list[TrackingEvent]:
    """The recorded events of a message, oldest first."""
    db.session.expire_all()
    return list(db.session.scalars(select(TrackingEvent).where(TrackingEvent.message_id == message_id)
                                   .order_by(TrackingEvent.id)))


def event_count() -> int:
    """All recorded events, whatever the message."""
    return db.session.scalar(select(func.count()).select_from(TrackingEvent))


def test_open_returns_a_gif_and_counts_one_open_per_client_in_the_window(app, client):
    """Every fetch gets the image; a client's repeated fetches within the window are one open (hole 14)."""
    sent = make_sent()
    url = open_url(app, sent.message.id)
    for _ in range(2):
        response = client.get(url, headers={"User-Agent": THUNDERBIRD})
        assert response.status_code == 200
        assert response.mimetype == "image/gif" and response.data == PIXEL
        assert response.headers["Cache-Control"] == "no-store, private"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    recorded = events(sent.message.id)
    assert [(e.kind, e.link_id, e.user_agent, e.machine) for e in recorded] == [
        (TrackingKind.OPEN, None, THUNDERBIRD, None)]


def test_head_requests_record_nothing(app, client):
    """Link scanners probing with HEAD get the headers, but no open or click is recorded."""
    sent = make_sent()
    assert client.head(open_url(app, sent.message.id)).status_code == 200
    response = client.head(click_url(app, sent.message.id, sent.links[0].id))
    assert response.status_code == 302 and response.headers["Location"] == "https://example.jp/price"
    assert client.head(tamper(open_url(app, sent.message.id))).status_code == 404
    assert events(sent.message.id) == []


def test_long_user_agent_is_cut_to_the_column(app, client):
    """A User-Agent longer than 500 characters is stored cut, not refused."""
    sent = make_sent()
    assert client.get(open_url(app, sent.message.id), headers={"User-Agent": "x" * 800}).status_code == 200
    [recorded] = events(sent.message.id)
    assert recorded.user_agent == "x" * 500


def test_gmail_proxy_open_is_labelled_and_not_a_persons_open(app, client):
    """The Gmail image proxy is kept with its label, counted apart from people's opens."""
    sent = make_sent()
    url = open_url(app, sent.message.id)
    client.get(url, headers={"User-Agent": GMAIL_PROXY})
    [recorded] = events(sent.message.id)
    assert recorded.machine == "Gmail画像プロキシ"
    summary = tracking_summaries(db.session, sent.message.account_id, [sent.message.id])[sent.message.id]
    assert (summary.open_count, summary.first_open_at) == (0, None)
    assert summary.machine_open_count == 1 and summary.machine_labels == {"Gmail画像プロキシ"}
    client.get(url, headers={"User-Agent": THUNDERBIRD})
    summary = tracking_summaries(db.session, sent.message.account_id, [sent.message.id])[sent.message.id]
    assert summary.open_count == 1 and summary.first_open_at == events(sent.message.id)[1].occurred_at
    assert summary.machine_open_count == 1


def test_click_redirects_to_the_stored_url_and_records_the_link(app, client):
    """A click is recorded against its link and the browser goes to the address stored at sending."""
    sent = make_sent()
    link = sent.links[1]
    response = client.get(click_url(app, sent.message.id, link.id), headers={"User-Agent": THUNDERBIRD})
    assert response.status_code == 302
    assert response.headers["Location"] == "https://example.jp/faq"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    [recorded] = events(sent.message.id)
    assert (recorded.kind, recorded.link_id, recorded.machine) == (TrackingKind.CLICK, link.id, None)


@pytest.mark.parametrize("query", ["url=https://evil.example", "next=https://evil.example",
                                   "redirect=https://evil.example", "to=https://evil.example",
                                   "URL=https://evil.example"])
def test_a_destination_in_the_query_is_refused(app, client, query):
    """A genuine token with ?url= (or next/redirect/to) gets 404: no redirect, nothing recorded."""
    sent = make_sent()
    response = client.get(f"{click_url(app, sent.message.id, sent.links[0].id)}?{query}")
    assert response.status_code == 404 and "Location" not in response.headers
    assert client.get(f"{open_url(app, sent.message.id)}?{query}").status_code == 404
    assert events(sent.message.id) == []


def test_forged_tokens_are_404_and_record_nothing(app, client):
    """Tampered tokens, swapped paths, another message's link and untracked mail all get 404."""
    sent, other = make_sent(), make_sent()
    untracked = make_sent(tracked=False)
    secret = app.config["SECRET_KEY"]
    refused = [
        tamper(open_url(app, sent.message.id)),
        tamper(click_url(app, sent.message.id, sent.links[0].id)),
        CLICK_PATH + open_token(secret, sent.message.tracking_id),
        OPEN_PATH + click_token(secret, sent.message.tracking_id, 0),
        CLICK_PATH + click_token(secret, sent.message.tracking_id, len(sent.links)),
        CLICK_PATH + click_token(secret, other.message.tracking_id, -1),
        OPEN_PATH + open_token(secret, sent.message.id),  # the old message-id form, for mail that has an id
        CLICK_PATH + click_token(secret, sent.message.id, 0),
        open_url(app, untracked.message.id),
        click_url(app, untracked.message.id, untracked.links[0].id),
        open_url(app, 999_999),
        OPEN_PATH + open_token("another-secret", sent.message.tracking_id),
        OPEN_PATH + "not-a-token",
    ]
    for url in refused:
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Location" not in response.headers
    assert event_count() == 0


@pytest.mark.parametrize("stored", ["javascript:alert(1)", "ftp://files.example/a", "/relative/path",
                                    "https://", "https://example.jp/a\r\nSet-Cookie: x=1"])
def test_only_web_addresses_are_followed(app, client, stored):
    """A stored link that is not an http(s) address is never redirected to."""
    sent = make_sent(urls=(stored,))
    response = client.get(click_url(app, sent.message.id, sent.links[0].id))
    assert response.status_code == 404 and "Location" not in response.headers
    assert events(sent.message.id) == []


def test_anonymous_requests_get_no_cookie(app, client):
    """Mail clients are never handed a cookie, whether the answer is the image, a redirect or a 404."""
    sent = make_sent()
    for url in (open_url(app, sent.message.id), click_url(app, sent.message.id, sent.links[0].id),
                tamper(open_url(app, sent.message.id))):
        response = client.get(url)
        assert response.status_code in (200, 302, 404)
        assert response.headers.getlist("Set-Cookie") == []


def test_the_404_page_works_without_a_login(app, client):
    """A broken tracked link shows the Japanese 404 page to a customer who is not signed in."""
    response = client.get(CLICK_PATH + "broken")
    assert response.status_code == 404
    assert "ページが見つかりません" in response.get_data(as_text=True)


def test_signed_in_member_following_a_link_gets_no_cookie(app, client, auth):
    """A member's own browser is not handed a refreshed session cookie by the tracking paths."""
    sent = make_sent()
    account, owner = make_account()
    auth.login_member(owner)
    response = client.get(click_url(app, sent.message.id, sent.links[0].id))
    assert response.status_code == 302 and response.headers.getlist("Set-Cookie") == []


def test_summaries_count_people_and_machines_per_link(app, client):
    """Per link: people's clicks with the first time, machine fetches counted apart; unclicked links left out."""
    sent = make_sent(urls=("https://example.jp/price", "https://example.jp/faq", "https://example.jp/unused"))
    price, faq = sent.links[0], sent.links[1]
    client.get(click_url(app, sent.message.id, price.id), headers={"User-Agent": "Microsoft SafeLinks"},
               environ_base={"REMOTE_ADDR": "198.51.100.7"})
    for address in ("203.0.113.10", "203.0.113.11"):
        client.get(click_url(app, sent.message.id, price.id), headers={"User-Agent": THUNDERBIRD},
                   environ_base={"REMOTE_ADDR": address})
    client.get(click_url(app, sent.message.id, faq.id), headers={"User-Agent": "curl/8.5.0"})
    summary = tracking_summaries(db.session, sent.message.account_id, [sent.message.id])[sent.message.id]
    first_person_click = events(sent.message.id)[1].occurred_at
    assert summary.clicks == [
        LinkClicks(price.id, "https://example.jp/price", 0, first_person_click, 2, 1, {"Microsoftセーフリンク"}),
        LinkClicks(faq.id, "https://example.jp/faq", 1, None, 0, 1, {"curl"}),
    ]
    assert summary.open_count == 0


def test_summaries_use_a_bounded_number_of_queries(app, client):
    """Several messages cost at most three queries; untracked ones and another account's are left out."""
    first = make_sent()
    sent = [first] + [make_sent(member=first.message.membership) for _ in range(3)]
    untracked = make_sent(tracked=False, member=first.message.membership)
    elsewhere = make_sent()
    for item in sent:
        client.get(open_url(app, item.message.id), headers={"User-Agent": THUNDERBIRD})
        client.get(click_url(app, item.message.id, item.links[0].id), headers={"User-Agent": THUNDERBIRD})
    client.get(open_url(app, elsewhere.message.id), headers={"User-Agent": THUNDERBIRD})
    ids = [item.message.id for item in sent] + [untracked.message.id, elsewhere.message.id]
    db.session.commit()
    account_id = first.message.account_id
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        """Note each statement sent to the database."""
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        summaries = tracking_summaries(db.session, account_id, ids)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(statements) <= 3
    assert set(summaries) == {item.message.id for item in sent}
    assert all(s.open_count == 1 and [c.click_count for c in s.clicks] == [1] for s in summaries.values())
    assert tracking_summaries(db.session, account_id, []) == {}


def render_summary(app, summary: TrackingSummary) -> str:
    """The partial as the thread page includes it."""
    with app.test_request_context():
        return render_template_string('{% include "tracking/_summary.html" %}', summary=summary)


def test_summary_partial_shows_unopened(app):
    """A tracked message nobody opened says so, and that nothing was clicked."""
    sent = make_sent()
    summary = tracking_summaries(db.session, sent.message.account_id, [sent.message.id])[sent.message.id]
    page = render_summary(app, summary)
    assert "開封:" in page and "未開封" in page and "クリックなし" in page
    assert "含めていません" not in page


def test_summary_partial_shows_opens_machines_and_clicks_as_text(app):
    """First open in Japan time with the count, the machine note, and links as text rather than links."""
    long_url = "https://example.jp/" + "a" * 100
    summary = TrackingSummary(
        message_id=1, first_open_at=datetime(2026, 11, 27, 1, 15, tzinfo=timezone.utc), open_count=3,
        machine_open_count=2, machine_labels={"Gmail画像プロキシ"},
        clicks=[LinkClicks(7, long_url, 0, datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc), 2)])
    page = render_summary(app, summary)
    assert "開封: 2026/11/27 10:15 に初回開封（3回）" in page
    assert "自動取得（Gmail画像プロキシ）による表示 2回は開封数に含めていません" in page
    assert "2026/11/27 11:00 に初回クリック（2回）" in page
    assert "<a " not in page and "<code" in page and "…" in page


def test_tokens_carry_a_random_id_not_the_message_id(app):
    """The token's payload is the message's random tracking id; nothing in it is the sequential id (hole 14)."""
    from itsdangerous import URLSafeSerializer
    first, second = make_sent(), make_sent()
    secret = app.config["SECRET_KEY"]
    for sent in (first, second):
        payload = URLSafeSerializer(secret, salt="portal.tracking.open").loads(open_url(app, sent.message.id)[5:])
        assert payload == [sent.message.tracking_id] and len(sent.message.tracking_id) >= 22
    assert first.message.tracking_id != second.message.tracking_id


def test_mail_sent_before_tracking_ids_keeps_counting(app, client):
    """Tokens already out in mail (message id and link id) still count for the messages that have no tracking id."""
    sent = make_sent(legacy=True)
    secret = app.config["SECRET_KEY"]
    assert client.get(OPEN_PATH + open_token(secret, sent.message.id)).status_code == 200
    response = client.get(CLICK_PATH + click_token(secret, sent.message.id, sent.links[1].id))
    assert response.status_code == 302 and response.headers["Location"] == "https://example.jp/faq"
    assert [e.kind for e in events(sent.message.id)] == [TrackingKind.OPEN, TrackingKind.CLICK]


def test_replayed_tokens_count_once_per_client_per_window(app, client):
    """One client fetching 20 times is one open and one click; another client counts; after the window, again."""
    sent = make_sent()
    for _ in range(20):
        client.get(open_url(app, sent.message.id), headers={"User-Agent": THUNDERBIRD})
        client.get(click_url(app, sent.message.id, sent.links[0].id), headers={"User-Agent": THUNDERBIRD})
    assert sorted(e.kind.value for e in events(sent.message.id)) == ["click", "open"]
    client.get(open_url(app, sent.message.id), environ_base={"REMOTE_ADDR": "2001:db8::1"})
    client.get(open_url(app, sent.message.id), environ_base={"REMOTE_ADDR": "2001:db8::2"})  # same /64
    assert len(events(sent.message.id)) == 3
    for recorded in events(sent.message.id):
        recorded.occurred_at = recorded.occurred_at - timedelta(minutes=6)
    db.session.commit()
    client.get(open_url(app, sent.message.id), headers={"User-Agent": THUNDERBIRD})
    summary = tracking_summaries(db.session, sent.message.account_id, [sent.message.id])[sent.message.id]
    assert summary.open_count == 3 and summary.clicks[0].click_count == 1
    assert all(e.client_key and "127.0.0.1" not in e.client_key for e in events(sent.message.id))


@pytest.mark.parametrize("user_agent", ["Python-urllib/3.11", "python-requests/2.32.3", "curl/8.5.0",
                                        "Go-http-client/1.1", "Wget/1.21.4", "python-httpx/0.27.0",
                                        "okhttp/4.12.0", "Java/17.0.9", "Apache-HttpClient/4.5.14 (Java/17)",
                                        "libwww-perl/6.72", "node-fetch/1.0", "axios/1.7.2", "HTTPie/3.2.2",
                                        "PostmanRuntime/7.39.0", "Mozilla/5.0 HeadlessChrome/126.0", ""])
def test_library_fetches_are_machines_not_people(app, client, user_agent):
    """A Python-urllib (or any HTTP library's) fetch is labelled a machine and is not a person's open."""
    sent = make_sent()
    client.get(open_url(app, sent.message.id), headers={"User-Agent": user_agent})
    [recorded] = events(sent.message.id)
    assert recorded.machine
    summary = tracking_summaries(db.session, sent.message.account_id, [sent.message.id])[sent.message.id]
    assert (summary.open_count, summary.machine_open_count) == (0, 1)
