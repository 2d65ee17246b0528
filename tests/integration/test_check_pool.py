"""Hole 3: link checks, 再認証 and 今すぐ同期 run in a pool of their own, so a dead mail host cannot stall the portal."""
import socket
import threading
import time

import pytest
import requests
import waitress

from portal.extensions import db
from portal.mailbox import checks
from portal.mailbox.services import connection_policy
from portal.models import Role
from tests.factories import PASSWORD, enable_email, make_account, make_link, make_member


class HangingServer:
    """A loopback socket that accepts every connection and never says a word (a mail host gone silent)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=32)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.held.append(connection)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        for connection in self.held:
            connection.close()
        self.sock.close()


@pytest.fixture
def hanging():
    """A silent mail host on 127.0.0.1."""
    server = HangingServer()
    yield server
    server.close()


def link_form(email: str, port: int) -> dict:
    """The link form pointing both servers at the silent host."""
    return {"email": email, "imap_host": "127.0.0.1", "imap_port": str(port), "imap_security": "ssl",
            "imap_username": email, "imap_password": "pw", "smtp_host": "127.0.0.1", "smtp_port": str(port),
            "smtp_security": "ssl", "smtp_username": "", "smtp_password": ""}


def wait_for(condition, seconds: float) -> bool:
    """Poll a condition."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_ten_hanging_link_checks_do_not_stall_sign_in(make_app, hanging):
    """10 members link to a host that never answers; /login on the real waitress server still answers in < 1 s."""
    app = make_app(MAIL_EXTRA_PORTS=[hanging.port], MAIL_CHECK_TIMEOUT_SECONDS=4)
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        emails = [owner.user.email] + [make_member(account, Role.USER).user.email for _ in range(9)]
    server = waitress.create_server(app, host="127.0.0.1", port=0)  # default threads, as wsgi.py serves
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{server.effective_port}"
    try:
        members = []
        for email in emails:
            member = requests.Session()
            assert member.post(f"{base}/login", data={"email": email, "password": PASSWORD},
                               allow_redirects=False, timeout=10).status_code == 302
            members.append(member)
        answers: dict[str, tuple[int, str, float]] = {}

        def link(member, email):
            started = time.monotonic()
            response = member.post(f"{base}/settings/mailbox", data=link_form(email, hanging.port), timeout=30)
            answers[email] = (response.status_code, response.text, time.monotonic() - started)

        attempts = [threading.Thread(target=link, args=pair) for pair in zip(members, emails)]
        for attempt in attempts:
            attempt.start()
        assert wait_for(lambda: len(hanging.held) >= 2, 5)  # the pool's checks are in flight
        login_times = []
        for _ in range(5):
            started = time.monotonic()
            assert requests.get(f"{base}/login", timeout=5).status_code == 200
            login_times.append(time.monotonic() - started)
        for attempt in attempts:
            attempt.join(timeout=30)
        assert max(login_times) < 1.0, login_times
        statuses = sorted(status for status, _, _ in answers.values())
        assert statuses == [422] * 2 + [429] * 8, statuses
        busy = [(text, seconds) for status, text, seconds in answers.values() if status == 429]
        assert all(checks.ALL_BUSY in text and seconds < 2 for text, seconds in busy)
        assert all("タイムアウト" in text for status, text, _ in answers.values() if status == 422)
        assert len(hanging.held) == 2  # nothing beyond the pool ever reached the host
    finally:
        server.close()
        serving.join(timeout=5)


def test_one_check_at_a_time_per_member_and_sync_now_waits_its_turn(make_app, hanging):
    """While a member's check runs, their second link attempt and 今すぐ同期 get a 429 at once."""
    app = make_app(MAIL_EXTRA_PORTS=[hanging.port], MAIL_CHECK_WORKERS=4)
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        email, membership_id = owner.user.email, owner.id
    client = app.test_client()
    client.post("/login", data={"email": email, "password": PASSWORD})
    release = threading.Event()
    running = threading.Thread(target=lambda: checks.gate(app).run(membership_id, release.wait, 10))
    running.start()
    try:
        assert wait_for(lambda: membership_id in checks.gate(app)._members, 2)
        response = client.post("/settings/mailbox", data=link_form(email, hanging.port))
        assert response.status_code == 429 and checks.MEMBER_BUSY in response.get_data(as_text=True)
        assert hanging.held == []
        with app.app_context():
            make_link(db.session.get(type(owner), membership_id))
        response = client.post("/settings/mailbox/sync")
        assert response.status_code == 429 and checks.MEMBER_BUSY in response.get_data(as_text=True)
    finally:
        release.set()
        running.join(timeout=5)
    assert wait_for(lambda: not checks.gate(app)._members, 2)


def test_interactive_checks_time_out_after_8_seconds(make_app):
    """A member waiting on a check gives a dead host 8 s; background passes keep MAIL_TIMEOUT_SECONDS."""
    app = make_app()
    assert connection_policy(app.config, interactive=True).timeout == 8
    assert connection_policy(app.config).timeout == 15


def test_the_next_step_right_after_a_check_finds_the_slot_free():
    """The slot is freed before the waiting request sees the result (the OAuth2 exchange then the mailbox check)."""
    gate = checks.CheckGate(1)
    assert [gate.run(7, lambda value: value, n) for n in range(300)] == list(range(300))
