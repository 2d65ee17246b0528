"""Hole 11: every page sends a CSP forbidding framing, nosniff, a Referrer-Policy, and no-store when signed in."""
import pytest
from werkzeug.routing.converters import AnyConverter, NumberConverter

from portal.models import Role
from tests.factories import enable_email, make_account, make_customer, make_member, make_message


def get_urls(app, ids: dict) -> list[str]:
    """Every GET route of the app (static files aside), once per <any(...)> value, ids filled in where known."""
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        choices = [{}]
        for name in rule.arguments:
            converter = rule._converters[name]
            if isinstance(converter, AnyConverter):
                values = sorted(converter.items)
            else:
                values = [ids.get(name, 1 if isinstance(converter, NumberConverter) else "x")]
            choices = [dict(choice, **{name: value}) for choice in choices for value in values]
        urls.extend(rule.build(choice, append_unknown=False)[1] for choice in choices)
    return urls


def assert_secure(url: str, response, signed_in: bool) -> None:
    """The headers every response must carry."""
    headers = response.headers
    policy = headers.get("Content-Security-Policy", "")
    assert response.status_code != 500, url
    assert "frame-ancestors 'none'" in policy, (url, policy)
    assert "default-src" in policy and "'unsafe-eval'" not in policy, (url, policy)
    assert headers.get("X-Content-Type-Options") == "nosniff", url
    assert headers.get("Referrer-Policy") in ("same-origin", "no-referrer", "strict-origin"), url
    if signed_in:
        assert "no-store" in headers.get("Cache-Control", ""), (url, headers.get("Cache-Control"))


@pytest.fixture
def world(app):
    """An account with data behind the id routes; returns (owner email, ids)."""
    account, owner = make_account()
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    customer = make_customer(account)
    message = make_message(account, [customer], member=owner)
    return owner.user.email, {"customer_id": customer.id, "message_id": message.id, "membership_id": member.id,
                              "feature": "email"}


def test_every_get_route_sends_the_security_headers(app, client, auth, world):
    """Anonymous and signed in, found or not: the same headers, and no-store on every signed-in page."""
    email, ids = world
    urls = get_urls(app, ids)
    assert len(urls) >= 40
    for url in urls:
        assert_secure(url, client.get(url), signed_in=False)
    auth.login(email)
    for url in urls:
        assert_secure(url, client.get(url), signed_in=True)
    assert client.get("/customers").status_code == 200 and client.get(f"/mails/{ids['message_id']}").status_code == 200


def test_no_inline_script_in_any_page(app, client, auth, world):
    """script-src 'self' holds: the pages load scripts from files only (no <script> body, no on* handlers)."""
    import re
    email, ids = world
    auth.login(email)
    for url in get_urls(app, ids):
        page = client.get(url).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", page), url
        assert not re.search(r"\son[a-z]+=\"", page), url


def test_static_files_stay_cacheable_and_the_thread_keeps_its_own_policy(app, client, auth, world):
    """Static files are not no-store; the mail thread keeps its stricter policy (with frame-ancestors 'none')."""
    email, ids = world
    auth.login(email)
    css = client.get("/static/css/portal.css")
    assert css.status_code == 200 and "no-store" not in css.headers.get("Cache-Control", "")
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    thread = client.get(f"/mails/{ids['message_id']}")
    policy = thread.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert thread.headers["Referrer-Policy"] == "no-referrer"
