"""Signed tracking tokens: each names one sent message (and one of its links); no Flask needed."""
from itsdangerous import BadSignature, URLSafeSerializer

# Separate salts: an open token can never be replayed as a click token, nor any other signed value as either.
OPEN_SALT = "portal.tracking.open"
CLICK_SALT = "portal.tracking.click"

OPEN_PATH = "/t/o/"
CLICK_PATH = "/t/c/"


def open_token(secret_key: str, message_id: int) -> str:
    """The token of a message's tracking image."""
    return URLSafeSerializer(secret_key, salt=OPEN_SALT).dumps([message_id])


def click_token(secret_key: str, message_id: int, link_id: int) -> str:
    """The token of one tracked link of a message."""
    return URLSafeSerializer(secret_key, salt=CLICK_SALT).dumps([message_id, link_id])


def read_open_token(secret_key: str, token: str) -> int | None:
    """The message id of a genuine open token, else None."""
    payload = _load(secret_key, OPEN_SALT, token)
    if isinstance(payload, list) and len(payload) == 1 and _all_ints(payload):
        return payload[0]
    return None


def read_click_token(secret_key: str, token: str) -> tuple[int, int] | None:
    """(message id, link id) of a genuine click token, else None."""
    payload = _load(secret_key, CLICK_SALT, token)
    if isinstance(payload, list) and len(payload) == 2 and _all_ints(payload):
        return payload[0], payload[1]
    return None


def _load(secret_key: str, salt: str, token: str):
    """Verify and decode, treating any damage as no token."""
    try:
        return URLSafeSerializer(secret_key, salt=salt).loads(token)
    except (BadSignature, ValueError, UnicodeDecodeError):
        return None


def _all_ints(values: list) -> bool:
    """JSON may carry floats or booleans; only plain ints are ids."""
    return all(type(value) is int for value in values)
