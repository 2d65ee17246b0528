"""Failed password attempts per sign-in address, on top of Flask-Limiter's per-client limit on the routes."""
from flask import current_app
from limits import parse_many

from portal.auth.services import normalise_email
from portal.extensions import limiter


def _limits():
    """The configured per-address limits (LOGIN_EMAIL_RATE_LIMIT, e.g. "10 per hour")."""
    return parse_many(current_app.config["LOGIN_EMAIL_RATE_LIMIT"])


def _key(email: str) -> str:
    """One bucket per normalised address, known or not (so the limit tells nothing about who exists)."""
    return "failed-password:" + normalise_email(email)


def address_locked(email: str) -> bool:
    """True when this address has used up its failed attempts (even the right password then waits)."""
    return any(not limiter.limiter.test(limit, _key(email)) for limit in _limits())


def record_failure(email: str) -> None:
    """Count one wrong password for this address."""
    for limit in _limits():
        limiter.limiter.hit(limit, _key(email))
