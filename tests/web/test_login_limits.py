"""The sign-in limit: per client address (behind trusted proxies, the real one) and per sign-in address."""
from tests.factories import PASSWORD, make_account


def attempt(client, email, password, ip, forwarded=None):
    """A sign-in from one client address, optionally through a proxy that adds X-Forwarded-For."""
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post("/login", data={"email": email, "password": password}, headers=headers,
                       environ_base={"REMOTE_ADDR": ip})


def test_guessing_one_address_from_many_clients_is_stopped(make_app):
    """Ten failures from ten addresses lock that sign-in address (even the right password gets 429); others not."""
    app = make_app(LOGIN_RATE_LIMIT="5 per minute", LOGIN_EMAIL_RATE_LIMIT="10 per hour")
    client = app.test_client()
    with app.app_context():
        email = make_account()[1].user.email
        bystander = make_account()[1].user.email
    for number in range(10):
        assert attempt(client, email, "wrong-password", f"198.51.100.{number}").status_code == 401
    locked = attempt(client, f"  {email.upper()} ", PASSWORD, "203.0.113.7")
    assert locked.status_code == 429
    assert "しばらくお待ちください" in locked.get_data(as_text=True)
    assert attempt(client, bystander, PASSWORD, "203.0.113.7").status_code == 302


def test_unknown_addresses_are_limited_the_same_way(make_app):
    """The per-address limit answers alike for addresses with and without a login (no way to tell them apart)."""
    app = make_app(LOGIN_RATE_LIMIT="100 per minute", LOGIN_EMAIL_RATE_LIMIT="3 per hour")
    client = app.test_client()
    for number in range(3):
        assert attempt(client, "ghost@example.jp", "x-password", f"198.51.100.{number}").status_code == 401
    assert attempt(client, "ghost@example.jp", "x-password", "198.51.100.99").status_code == 429


def test_without_trusted_proxies_forwarded_for_is_ignored(make_app):
    """By default a client cannot pick its own bucket by sending X-Forwarded-For."""
    app = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_EMAIL_RATE_LIMIT="100 per hour")
    client = app.test_client()
    for number in range(3):
        assert attempt(client, f"a{number}@example.jp", "x-password", "192.0.2.1",
                       forwarded=f"198.51.100.{number}").status_code == 401
    assert attempt(client, "b@example.jp", "x-password", "192.0.2.1", forwarded="198.51.100.50").status_code == 429


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(make_app):
    """With TRUSTED_PROXY_COUNT=1 the proxy's X-Forwarded-For names the client; one client's failures do not
    lock out everyone else behind the same proxy."""
    app = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_EMAIL_RATE_LIMIT="100 per hour", TRUSTED_PROXY_COUNT=1)
    client = app.test_client()
    with app.app_context():
        email = make_account()[1].user.email
    for _ in range(3):
        assert attempt(client, "x@example.jp", "x-password", "10.0.0.2", forwarded="198.51.100.1").status_code == 401
    assert attempt(client, "x@example.jp", "x-password", "10.0.0.2", forwarded="198.51.100.1").status_code == 429
    assert attempt(client, email, PASSWORD, "10.0.0.2", forwarded="198.51.100.2").status_code == 302
    # A client-supplied value in front of the proxy's own is not trusted: the proxy's entry (last) counts.
    spoofed = attempt(client, "x@example.jp", "x-password", "10.0.0.2", forwarded="203.0.113.9, 198.51.100.1")
    assert spoofed.status_code == 429
