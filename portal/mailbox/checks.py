"""Work a member waits for at a mail server: link checks, 再認証 and 今すぐ同期.

It runs in a small pool of its own, at most one job per member and a few in all, so a host that never answers
holds pool threads, never the web server's request threads: past the limits the member gets a 429 at once, and
sign-in and every other page keep answering. Link attempts are also rate-limited per member: a check logs in with
whatever was typed, and unthrottled the portal would be a password-guessing proxy.
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from flask import Flask, current_app
from limits import parse_many

from portal.extensions import limiter
from portal.mailsync.connection import ConnectionPolicy, ServerSettings
from portal.mailsync.verify import FolderSnapshot, verify_mailbox

MEMBER_BUSY = "前回のメールボックスの確認・同期がまだ終わっていません。終わってから、もう一度お試しください。"
ALL_BUSY = ("ただいまメールボックスの確認・同期が混み合っています。"
            "少し時間をおいて、もう一度お試しください。")
TOO_MANY_ATTEMPTS = ("メールボックスの確認を短時間に何度も行ったため、しばらく受け付けを止めています。"
                     "時間をおいて、もう一度お試しください。")

T = TypeVar("T")
Verifier = Callable[[ServerSettings, ServerSettings, ConnectionPolicy], list[FolderSnapshot]]


class CheckRefused(Exception):
    """The check was not run; `message` says why in the member's words (shown with status 429)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class CheckGate:
    """A pool apart from the request threads: one job per member at a time, `workers` jobs in all."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mailbox-check")
        self._lock = threading.Lock()
        self._members: set[int] = set()

    def run(self, membership_id: int, work: Callable[..., T], *args) -> T:
        """Run work in the pool and wait for it; CheckRefused at once when the member or the pool is busy."""
        with self._lock:
            if membership_id in self._members:
                raise CheckRefused(MEMBER_BUSY)
            if len(self._members) >= self.workers:
                raise CheckRefused(ALL_BUSY)
            self._members.add(membership_id)

        def job() -> T:
            # Freed when the work ends, before the waiting request sees the result: the member's next step (the
            # mailbox check right after an OAuth2 code exchange) finds the slot free, and a slot is never given twice.
            try:
                return work(*args)
            finally:
                self._release(membership_id)

        try:
            future = self._pool.submit(job)
        except BaseException:
            self._release(membership_id)
            raise
        return future.result()

    def _release(self, membership_id: int) -> None:
        with self._lock:
            self._members.discard(membership_id)


_gate_lock = threading.Lock()


def gate(app: Flask | None = None) -> CheckGate:
    """The app's pool (MAIL_CHECK_WORKERS jobs at a time), made on first use."""
    app = app or current_app._get_current_object()
    with _gate_lock:
        if "mailbox_checks" not in app.extensions:
            app.extensions["mailbox_checks"] = CheckGate(app.config["MAIL_CHECK_WORKERS"])
        return app.extensions["mailbox_checks"]


def count_link_attempt(membership_id: int) -> None:
    """Count one link or re-authentication attempt of the member; CheckRefused past MAIL_LINK_RATE_LIMIT."""
    key = f"mailbox-link:{membership_id}"
    limits = parse_many(current_app.config["MAIL_LINK_RATE_LIMIT"])
    if not all(limiter.limiter.test(limit, key) for limit in limits):
        raise CheckRefused(TOO_MANY_ATTEMPTS)
    for limit in limits:
        limiter.limiter.hit(limit, key)


def checked_verifier(membership_id: int) -> Verifier:
    """The link check a route hands to the link services: counted against the member's limit, run in the pool."""
    checks = gate()

    def verify(imap: ServerSettings, smtp: ServerSettings, policy: ConnectionPolicy) -> list[FolderSnapshot]:
        count_link_attempt(membership_id)
        return checks.run(membership_id, verify_mailbox, imap, smtp, policy)
    return verify
