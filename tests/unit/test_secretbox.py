"""Stored mailbox passwords: encrypted, bound to their row, rotatable."""
import pytest
from cryptography.fernet import Fernet

from portal.secretbox import SecretBox, SecretBoxError

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_round_trip_and_no_plaintext():
    """The ciphertext does not contain the password and decrypts back with the same context."""
    box = SecretBox(NEW)
    token = box.encrypt("パスワード-secret", "mailbox_links:1:imap_password")
    assert "secret" not in token and "パスワード" not in token
    assert box.decrypt(token, "mailbox_links:1:imap_password") == "パスワード-secret"


@pytest.mark.parametrize("other_context", ["mailbox_links:2:imap_password", "mailbox_links:1:smtp_password"])
def test_ciphertext_moved_to_another_row_or_column_fails(other_context):
    """Copying a ciphertext to another row (or column) does not decrypt."""
    box = SecretBox(NEW)
    token = box.encrypt("secret", "mailbox_links:1:imap_password")
    with pytest.raises(SecretBoxError):
        box.decrypt(token, other_context)


def test_tampered_or_garbage_tokens_fail():
    """A changed byte or a non-token is refused, not decrypted into garbage."""
    box = SecretBox(NEW)
    token = box.encrypt("secret", "ctx")
    flipped = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (flipped, "not-a-token", "v1:unknown:AAAA", ""):
        with pytest.raises(SecretBoxError):
            box.decrypt(bad, "ctx")


def test_rotation_reads_old_key_and_writes_new():
    """With the old key listed as old, old values still decrypt and are flagged for re-encryption."""
    old_token = SecretBox(OLD).encrypt("secret", "ctx")
    rotated_box = SecretBox(NEW, [OLD])
    assert rotated_box.decrypt(old_token, "ctx") == "secret"
    assert rotated_box.needs_rotation(old_token)
    new_token = rotated_box.encrypt("secret", "ctx")
    assert not rotated_box.needs_rotation(new_token)
    with pytest.raises(SecretBoxError):
        SecretBox(NEW).decrypt(old_token, "ctx")  # once the old key is dropped


def test_key_must_be_32_bytes():
    """A mistyped key is refused at start-up, not at the first link."""
    with pytest.raises(ValueError):
        SecretBox("dG9vLXNob3J0")
