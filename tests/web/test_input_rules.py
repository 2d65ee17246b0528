"""The input rule of portal.inputs: control characters, ids past 2^31, far pages and far dates (issue 10, holes 4-5).

Each of these was a 500 on PostgreSQL; run this module with TEST_DATABASE_URL as well.
"""
import logging

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.inputs import CONTROL_CHARACTER_MESSAGE
from portal.models import Customer, MailAttachment, MailTemplate, Role, User
from tests.factories import enable_email, make_account, make_customer, make_member, make_message

HUGE_IDS = [2**31, 2**63, 10**30]


def _text(response) -> str:
    return response.get_data(as_text=True)


# --- hole 4: NUL and other control characters -------------------------------------------------------------------

@pytest.mark.parametrize("email, password", [("a\x00b@example.jp", "x"), ("owner@example.jp", "pass\x00word"),
                                             ("\x1b[31m@example.jp", "x")])
def test_login_with_a_control_character_is_422_in_japanese(client, email, password):
    """POST /login with a NUL in either field: the form's Japanese message, never a 500 (PostgreSQL refused the NUL)."""
    make_account()
    response = client.post("/login", data={"email": email, "password": password})
    assert response.status_code == 422
    assert CONTROL_CHARACTER_MESSAGE in _text(response)


@pytest.mark.parametrize("path", ["/customers?q=%00", "/customers?q=a%00b", "/mails?q=%00", "/mails?q=%1b",
                                  "/mails?member=%00", "/login?next=%00", "/customers?q%00=1"])
def test_a_query_argument_with_a_control_character_is_ignored(client, auth, path):
    """A search or filter carrying a control character is dropped, and the page shows as without it."""
    account, owner = make_account()
    enable_email(account, owner)
    make_customer(account, name="山田 太郎")
    if path.startswith("/login"):
        assert client.get(path).status_code == 200
        return
    auth.login_member(owner)
    response = client.get(path)
    assert response.status_code == 200
    if path.startswith("/customers"):
        assert "山田 太郎" in _text(response)  # the whole list, as without ?q=


def test_a_search_longer_than_any_field_finds_nothing_without_a_500(client, auth):
    """?q= of 1 MB on the customer list: no customer can contain it (SQLite refused the LIKE: found by the sweep)."""
    account, owner = make_account()
    make_customer(account, name="山田 太郎")
    auth.login_member(owner)
    response = client.get("/customers?q=" + "a" * 1_000_000)
    assert response.status_code == 200 and "山田 太郎" not in _text(response)
    assert "山田 太郎" in _text(client.get("/customers?q=山田"))


def test_a_control_character_in_a_form_field_is_422_beside_the_field(client, auth):
    """Every form refuses a NUL with the same Japanese message, and stores nothing."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post("/customers/new", data={"name": "山田\x00太郎", "email": "yamada@client.example"})
    assert response.status_code == 422
    assert CONTROL_CHARACTER_MESSAGE in _text(response)
    response = client.post("/customers/new", data={"name": "山田 太郎", "email": "yamada@client.example",
                                                   "company": "\x07商事"})
    assert response.status_code == 422
    assert db.session.scalar(select(Customer).where(Customer.account_id == account.id)) is None


def test_tab_and_line_breaks_are_kept_in_a_multiline_field_only(client, auth):
    """A template body may hold tabs and line breaks; its single-line name may not; a NUL is refused in both."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post("/templates/new", data={"name": "ご挨拶", "subject": "件名",
                                                   "body": "{{顧客名}} 様\r\n\tいつもお世話になっております。"})
    assert response.status_code == 302
    template = db.session.scalar(select(MailTemplate).where(MailTemplate.account_id == account.id))
    assert template.body == "{{顧客名}} 様\n\tいつもお世話になっております。"
    response = client.post("/templates/new", data={"name": "ご\t挨拶", "subject": "件名", "body": "本文"})
    assert response.status_code == 422
    assert "タブを含めることはできません" in _text(response)
    response = client.post("/templates/new", data={"name": "ご挨拶2", "subject": "件名", "body": "本\x00文"})
    assert response.status_code == 422
    assert CONTROL_CHARACTER_MESSAGE in _text(response)


@pytest.mark.parametrize("path", ["/password/reset/ab%00cd", "/invitations/ab%00cd", "/settings/features/e%00/on"])
def test_a_path_part_with_a_control_character_is_404(client, auth, path):
    """A token or name in the address holding a NUL names nothing (PostgreSQL would refuse to look it up)."""
    _, owner = make_account()
    if path.startswith("/settings"):
        auth.login_member(owner)
    assert client.get(path).status_code == 404


def test_a_database_error_never_logs_the_statements_values(app, caplog):
    """A failed INSERT's message carries no parameter: a password hash (or mail text) never reaches the log."""
    _, owner = make_account()
    with app.app_context():
        duplicate = User(email=owner.user.email, name="重複", password_hash="$argon2id$v=19$secret-hash-value")
        db.session.add(duplicate)
        with caplog.at_level(logging.DEBUG), pytest.raises(IntegrityError) as raised:
            db.session.commit()
        db.session.rollback()
    assert "secret-hash-value" not in str(raised.value)
    assert "secret-hash-value" not in caplog.text


# --- hole 5: huge ids, far pages and far dates -------------------------------------------------------------------

@pytest.mark.parametrize("huge", HUGE_IDS)
def test_an_id_past_the_database_range_is_404(client, auth, huge):
    """Any <int:> id at or above 2^31 is no page at all (PostgreSQL's integer column refused it: a 500)."""
    account, owner = make_account()
    enable_email(account, owner)
    auth.login_member(owner)
    for path in (f"/customers/{huge}", f"/customers/{huge}/edit", f"/mails/{huge}", f"/mails/attachments/{huge}",
                 f"/templates/{huge}", f"/automations/{huge}", f"/settings/users/{huge}/disable"):
        assert client.get(path).status_code == 404, path


@pytest.mark.parametrize("huge", HUGE_IDS)
def test_an_id_past_the_database_range_in_a_query_or_form_is_ignored(client, auth, huge):
    """?customer=, ?member=, the 担当者 and the account choice: a huge number is no such object, never a 500."""
    account, owner = make_account()
    enable_email(account, owner)
    customer = make_customer(account)
    auth.login_member(owner)
    assert client.get(f"/mails?customer={huge}&member={huge}").status_code == 200
    response = client.post("/customers/new", data={"name": "新規", "email": "new@client.example",
                                                   "assigned_user_id": str(huge)})
    assert response.status_code == 422
    assert client.post("/accounts/select", data={"membership_id": str(huge)}).status_code == 422
    assert client.post("/automations/enroll", data={"sequence_id": str(huge),
                                                    "customer_id": str(customer.id)}).status_code in (404, 422)
    response = client.post(f"/mails/{make_message(account, [customer]).id}/reply",
                           data={"to": customer.email, "subject": "Re", "body": "本文", "template_id": str(huge),
                                 "action": "insert"})
    assert response.status_code in (404, 409, 422)


@pytest.mark.parametrize("page", ["0", "-1", "99999", str(2**31), str(2**63), "1e9", "x"])
def test_a_page_out_of_range_is_an_empty_or_first_page(client, auth, page):
    """page= beyond the last page (or past any integer) shows a page, never a 500."""
    account, owner = make_account()
    enable_email(account, owner)
    customer = make_customer(account)
    make_message(account, [customer])
    auth.login_member(owner)
    for path in ("/customers", f"/customers/{customer.id}", "/mails", "/mails?q=本文", "/templates",
                 "/automations", "/settings/users"):
        response = client.get(f"{path}{'&' if '?' in path else '?'}page={page}")
        assert response.status_code == 200, path


@pytest.mark.parametrize("query", ["date_to=9999-12-31", "date_from=0001-01-01", "date_from=0001-01-01&date_to=9999-12-31",
                                   "date_from=9999-12-31", "date_to=0001-01-01"])
@pytest.mark.parametrize("screen", ["/mails", "/settings/audit"])
def test_far_dates_are_clamped(client, auth, query, screen):
    """The mail list's and the audit log's period reach from the year 1 to 9999 without a 500 (the sweep found the
    audit log's); a far range still finds the mail."""
    account, owner = make_account()
    enable_email(account, owner)
    make_message(account, [make_customer(account)], subject="見積書")
    auth.login_member(owner)
    response = client.get(f"{screen}?{query}")
    assert response.status_code == 200
    if query == "date_from=0001-01-01&date_to=9999-12-31" and screen == "/mails":
        assert "見積書" in _text(response)


@pytest.mark.parametrize("huge", HUGE_IDS)
def test_the_audit_logs_member_filter_past_the_id_range_is_ignored(client, auth, huge):
    """?member= of the audit log is bounded like every id (a guard: the filter reads it as a number)."""
    _, owner = make_account()
    auth.login_member(owner)
    assert client.get(f"/settings/audit?member={huge}").status_code == 200


def test_role_membership_numbers_stay_in_range(client, auth):
    """A member page with a valid id still works after the bounded converter (no off-by-one at the top)."""
    account, owner = make_account()
    member = make_member(account, Role.USER)
    auth.login_member(owner)
    assert client.get(f"/settings/users/{member.id}/disable").status_code == 200
    assert client.get(f"/settings/users/{2**31 - 1}/disable").status_code == 404


# --- hole 6: line breaks in single-line fields -------------------------------------------------------------------

@pytest.mark.parametrize("path, data", [
    ("/customers/new", {"name": "山田\r\n太郎", "email": "yamada@client.example"}),
    ("/customers/new", {"name": "山田 太郎", "email": "yamada@client.example", "company": "ABC\n商事"}),
    ("/settings/account", {"name": "ABC\r商事"}),
    ("/settings/users/new", {"email": "new@example.jp", "name": "新人\nBcc: spy@evil.example", "role": "user"}),
    ("/templates/new", {"name": "ご\n挨拶", "subject": "件名", "body": "本文"}),
    ("/automations/new", {"name": "フォロー\r\n1回目", "stop_on_reply": "y"}),
])
def test_line_breaks_in_a_single_line_field_are_refused(client, auth, path, data):
    """Member, customer, company and other names refuse CR/LF with a Japanese message beside the field."""
    _, owner = make_account()
    auth.login_member(owner)
    response = client.post(path, data=data)
    assert response.status_code == 422, path
    assert "改行を含めることはできません" in _text(response)


# --- hole 7: a hostile attachment file name already stored ----------------------------------------------------------

def test_an_attachment_stored_with_a_line_break_in_its_name_still_downloads(client, auth):
    """A row imported before names were cleaned: the download answers (was a 500) with a one-line name."""
    account, owner = make_account()
    enable_email(account, owner)
    bad = MailAttachment(filename="evil\r\nSet-Cookie: x=1\r\n.txt", content_type="text/plain\r\nX-Evil: 1",
                         size_bytes=5, content=b"hello")
    make_message(account, [make_customer(account)], attachments=[bad])
    auth.login_member(owner)
    response = client.get(f"/mails/attachments/{bad.id}")
    assert response.status_code == 200 and response.data == b"hello"
    assert "Set-Cookie" not in response.headers and "X-Evil" not in response.headers
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "evil Set-Cookie" in response.headers["Content-Disposition"]


# --- hole 9: request and field size limits -----------------------------------------------------------------------

def test_a_request_over_the_size_limit_is_a_japanese_413(client, auth):
    """A 3 MB body (e.g. a 20 MB template) is refused before any form reads it, with a page that says why."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post("/templates/new", data={"name": "大きい", "subject": "件名", "body": "あ" * 1_000_000})
    assert response.status_code == 413
    assert "送信データが大きすぎます" in _text(response)
    assert db.session.scalar(select(MailTemplate).where(MailTemplate.account_id == account.id)) is None


def test_a_template_body_has_a_maximum_length(client, auth):
    """20,000 characters of template body at most (it was unlimited); the limit is said beside the field."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post("/templates/new", data={"name": "長い", "subject": "件名", "body": "a" * 20_001})
    assert response.status_code == 422
    assert "20000文字以内で入力してください" in _text(response)
    response = client.post("/templates/new", data={"name": "長い", "subject": "件名", "body": "a" * 20_000})
    assert response.status_code == 302


def test_a_field_without_its_own_limit_gets_the_default_ceiling(client, auth):
    """A single-line field that names no maximum (the login form's hidden next) still stops at 1,000 characters."""
    make_account()
    response = client.post("/login", data={"email": "a@example.jp", "password": "x", "next": "/" + "a" * 1_001})
    assert response.status_code == 422
    assert "1,000文字以内で入力してください" in _text(response)
