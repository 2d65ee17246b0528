"""Encryption of stored mailbox passwords: AES-GCM bound to the row it belongs to, with key rotation."""
import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted (wrong row, unknown key or tampered)."""


def _decode_key(key: str) -> bytes:
    """Read a urlsafe-base64 32-byte key (the format Fernet.generate_key() prints)."""
    raw = base64.urlsafe_b64decode(key.strip().encode())
    if len(raw) != 32:
        raise ValueError("MAILBOX_ENCRYPTION_KEY must be 32 bytes, urlsafe base64 encoded")
    return raw


def _key_id(raw: bytes) -> str:
    """A short, non-secret fingerprint naming which key encrypted a value."""
    return hashlib.sha256(b"portal-key-id" + raw).hexdigest()[:12]


class SecretBox:
    """Encrypts with the current key; decrypts with the current or any old key."""

    def __init__(self, current_key: str, old_keys: list[str] | tuple[str, ...] = ()):
        current = _decode_key(current_key)
        self._current_id = _key_id(current)
        self._keys = {_key_id(raw): AESGCM(raw) for raw in [_decode_key(k) for k in old_keys if k.strip()]}
        self._keys[self._current_id] = AESGCM(current)

    def encrypt(self, plaintext: str, context: str) -> str:
        """Encrypt; `context` (e.g. "mailbox_links:7:imap_password") must be given again to decrypt."""
        nonce = os.urandom(12)
        sealed = self._keys[self._current_id].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}:{self._current_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, context: str) -> str:
        """Decrypt a value made for exactly this context."""
        try:
            version, key_id, payload = token.split(":", 2)
            raw = base64.urlsafe_b64decode(payload.encode())
            aead = self._keys[key_id]
            if version != VERSION:
                raise SecretBoxError("unknown format")
            return aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (ValueError, KeyError, InvalidTag) as error:
            raise SecretBoxError("stored secret cannot be decrypted") from error

    def needs_rotation(self, token: str) -> bool:
        """True when the value was encrypted with an old key."""
        return token.split(":", 2)[1] != self._current_id if token.count(":") >= 2 else False
