"""Signed tracking tokens: each names one sent message by its random tracking id (and a link by its place); no Flask.

The id is random and opaque, so a token tells nothing about the portal (the mail's sequential id, how much mail the
portal sends) and one token cannot be turned into another message's. Mail sent before tracking ids existed carries
tokens with the message id; those are still read, so their opens and clicks keep counting.
"""
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

# Separate salts: an open token can never be replayed as a click token, nor any other signed value as either.
OPEN_SALT = "portal.tracking.open"
CLICK_SALT = "portal.tracking.click"

OPEN_PATH = "/t/o/"
CLICK_PATH = "/t/c/"


def new_tracking_id() -> str:
    """A fresh opaque id for one tracked message."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class TrackedRef:
    """What a genuine token names: a tracking id (or, in older mail, a message id) and a link's place or id."""

    tracking_id: str | None = None
    legacy_message_id: int | None = None
    link_position: int | None = None
    legacy_link_id: int | None = None


def open_token(secret_key: str, tracking_id: str) -> str:
    """The token of a message's tracking image."""
    return URLSafeSerializer(secret_key, salt=OPEN_SALT).dumps([tracking_id])


def click_token(secret_key: str, tracking_id: str, link_position: int) -> str:
    """The token of one tracked link of a message (its place among the message's links)."""
    return URLSafeSerializer(secret_key, salt=CLICK_SALT).dumps([tracking_id, link_position])


def read_open_token(secret_key: str, token: str) -> TrackedRef | None:
    """What a genuine open token names, else None."""
    payload = _load(secret_key, OPEN_SALT, token)
    if not isinstance(payload, list) or len(payload) != 1:
        return None
    if _is_tracking_id(payload[0]):
        return TrackedRef(tracking_id=payload[0])
    if type(payload[0]) is int:
        return TrackedRef(legacy_message_id=payload[0])
    return None


def read_click_token(secret_key: str, token: str) -> TrackedRef | None:
    """What a genuine click token names, else None."""
    payload = _load(secret_key, CLICK_SALT, token)
    if not isinstance(payload, list) or len(payload) != 2 or type(payload[1]) is not int:
        return None
    if _is_tracking_id(payload[0]):
        return TrackedRef(tracking_id=payload[0], link_position=payload[1])
    if type(payload[0]) is int:
        return TrackedRef(legacy_message_id=payload[0], legacy_link_id=payload[1])
    return None


def _is_tracking_id(value) -> bool:
    """A string of the tracking id's shape (anything else is not looked up)."""
    return isinstance(value, str) and 0 < len(value) <= 64


def _load(secret_key: str, salt: str, token: str):
    """Verify and decode, treating any damage as no token."""
    try:
        return URLSafeSerializer(secret_key, salt=salt).loads(token)
    except (BadSignature, ValueError, UnicodeDecodeError):
        return None
