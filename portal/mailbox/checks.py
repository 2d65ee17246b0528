"""Link attempts against a mail server, rate-limited per member.

A link check logs in with whatever the member typed: unthrottled, the portal would be a password-guessing proxy
towards any mail server the member points it at.
"""
from typing import Callable

from flask import current_app
from limits import parse_many

from portal.extensions import limiter
from portal.mailsync.connection import ConnectionPolicy, ServerSettings
from portal.mailsync.verify import FolderSnapshot, verify_mailbox

TOO_MANY_ATTEMPTS = ("メールボックスの確認を短時間に何度も行ったため、しばらく受け付けを止めています。"
                     "時間をおいて、もう一度お試しください。")

Verifier = Callable[[ServerSettings, ServerSettings, ConnectionPolicy], list[FolderSnapshot]]


class CheckRefused(Exception):
    """The check was not run; `message` says why in the member's words (shown with status 429)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def count_link_attempt(membership_id: int) -> None:
    """Count one link or re-authentication attempt of the member; CheckRefused past MAIL_LINK_RATE_LIMIT."""
    key = f"mailbox-link:{membership_id}"
    limits = parse_many(current_app.config["MAIL_LINK_RATE_LIMIT"])
    if not all(limiter.limiter.test(limit, key) for limit in limits):
        raise CheckRefused(TOO_MANY_ATTEMPTS)
    for limit in limits:
        limiter.limiter.hit(limit, key)


def checked_verifier(membership_id: int) -> Verifier:
    """The link check a route hands to the link services: counted against the member's limit first."""
    def verify(imap: ServerSettings, smtp: ServerSettings, policy: ConnectionPolicy) -> list[FolderSnapshot]:
        count_link_attempt(membership_id)
        return verify_mailbox(imap, smtp, policy)
    return verify
