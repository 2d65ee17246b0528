"""A big HTML mail opens quickly (issue 10, hole 8): sanitised once and kept; past a size cap, its text part."""
import time

from bs4 import BeautifulSoup

from portal.extensions import db
from portal.mails import html_view
from portal.models import MailAttachment, MailMessage
from tests.factories import enable_email, make_account, make_customer, make_message

ROW = '<tr><td style="color:#333;padding:4px">見積明細 {0}</td><td><a href="https://example.jp/p/{0}">詳細</a></td></tr>'


def _big_html(characters: int) -> str:
    rows, size, number = [], 0, 0
    while size < characters:
        row = ROW.format(number)
        rows.append(row)
        size, number = size + len(row), number + 1
    return "<html><body><table>" + "".join(rows) + "</table></body></html>"


def _count_renders(monkeypatch) -> list:
    calls = []
    real = html_view.render_mail_html

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(html_view, "render_mail_html", counting)
    return calls


def _frame(response) -> str:
    frame = BeautifulSoup(response.get_data(as_text=True), "html.parser").find("iframe", class_="mail-frame")
    return frame["srcdoc"] if frame else ""


def test_an_html_mail_is_sanitised_once_and_kept(client, auth, monkeypatch):
    """The second view reuses the first view's sanitised body; the inline image still gets a fresh signed address."""
    account, owner = make_account()
    enable_email(account, owner)
    logo = MailAttachment(filename="logo.png", content_type="image/png", size_bytes=4, content_id="logo@x",
                          content=b"\x89PNG")
    message = make_message(account, [make_customer(account)], html='<p>見積書です<img src="cid:logo@x">'
                           '<img src="https://tracker.example/p.gif"></p><script>alert(1)</script>',
                           attachments=[logo])
    calls = _count_renders(monkeypatch)
    auth.login_member(owner)
    first = client.get(f"/mails/{message.id}")
    second = client.get(f"/mails/{message.id}")
    assert first.status_code == second.status_code == 200
    assert len(calls) == 1
    for response in (first, second):
        document = _frame(response)
        assert "見積書です" in document and "alert" not in document and "tracker.example" not in document
        assert f"/mails/attachments/{logo.id}/inline?sig=" in document
        assert "portal.invalid" not in document
        assert "img-src data: http://localhost" in document  # the CSP names the portal for the inline image
        assert "外部の画像（1件）" in response.get_data(as_text=True)
    stored = db.session.get(MailMessage, message.id)
    db.session.refresh(stored)
    assert stored.safe_html_version == html_view.RENDER_VERSION and "見積書です" in stored.safe_html


def test_showing_images_renders_afresh_and_keeps_the_blocked_version(client, auth, monkeypatch):
    """画像を表示 is rendered for that view only; the kept body stays the one with remote images blocked."""
    account, owner = make_account()
    enable_email(account, owner)
    message = make_message(account, [make_customer(account)], html='<p>本文<img src="https://cdn.example/a.png"></p>')
    calls = _count_renders(monkeypatch)
    auth.login_member(owner)
    client.get(f"/mails/{message.id}")
    shown = client.get(f"/mails/{message.id}?images=1")
    assert "https://cdn.example/a.png" in _frame(shown)
    assert "https://cdn.example/a.png" not in _frame(client.get(f"/mails/{message.id}"))
    assert len(calls) == 2


def test_a_new_sanitiser_version_renders_the_kept_body_again(client, auth, monkeypatch):
    """A kept body from older sanitiser rules is not trusted: it is made again on the next view."""
    account, owner = make_account()
    enable_email(account, owner)
    message = make_message(account, [make_customer(account)], html="<p>本文</p>")
    auth.login_member(owner)
    client.get(f"/mails/{message.id}")
    calls = _count_renders(monkeypatch)
    monkeypatch.setattr(html_view, "RENDER_VERSION", html_view.RENDER_VERSION + 1)
    client.get(f"/mails/{message.id}")
    assert len(calls) == 1


def test_past_the_size_cap_the_text_part_is_shown_with_a_note(make_app, monkeypatch):
    """A 10 MB HTML mail opens in well under a second, as its text part, saying why (it took 9 s every time)."""
    app = make_app()
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        message = make_message(account, [make_customer(account)], html=_big_html(10_000_000),
                               text="テキスト版の本文です。")
        no_text = make_message(account, [make_customer(account)], html=_big_html(3_000_000), text=None)
        ids, email = (message.id, no_text.id), owner.user.email
    client = app.test_client()
    client.post("/login", data={"email": email, "password": "correct-horse-battery"})
    calls = _count_renders(monkeypatch)
    started = time.perf_counter()
    response = client.get(f"/mails/{ids[0]}")
    elapsed = time.perf_counter() - started
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and elapsed < 1.5, elapsed
    assert "HTML本文は大きすぎるため" in page and "テキスト版の本文です。" in page
    assert _frame(response) == "" and calls == []
    page = client.get(f"/mails/{ids[1]}").get_data(as_text=True)
    assert "HTML本文は大きすぎるため" in page and "見積明細 0" in page and "<td" not in page.split("見積明細 0")[0][-200:]
