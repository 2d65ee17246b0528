"""Stored mailbox secrets as credentials: password encryption, decryption, and the production CredentialsProvider."""
from typing import Mapping

from sqlalchemy.orm import Session

from portal.extensions import db
from portal.mailbox.oauth import OAuthTokens
from portal.mailsync.connection import MailboxError, ServerSettings
from portal.mailsync.credentials import CredentialsProvider
from portal.models import MailboxLink
from portal.secretbox import SecretBox, SecretBoxError

UNREADABLE_PASSWORD = "保存されているパスワードを復号できません。パスワードを入力し直してください。"


def secret_box(config: Mapping) -> SecretBox:
    """The password encrypter from the app settings."""
    return SecretBox(config["MAILBOX_ENCRYPTION_KEY"], config.get("MAILBOX_ENCRYPTION_OLD_KEYS") or ())


def password_context(link_id: int, column: str) -> str:
    """Binds a ciphertext to one row and column, so a copy elsewhere does not decrypt."""
    return f"mailbox_links:{link_id}:{column}"


def link_passwords(link: MailboxLink, box: SecretBox) -> tuple[str, str]:
    """Decrypt the IMAP and SMTP passwords of a link (raises SecretBoxError)."""
    return (box.decrypt(link.imap_password_encrypted, password_context(link.id, "imap_password")),
            box.decrypt(link.smtp_password_encrypted, password_context(link.id, "smtp_password")))


class StoredPasswords:
    """The CredentialsProvider of password links: the link's own settings with its password decrypted."""

    def __init__(self, box: SecretBox):
        """Decrypt with this box (current key and old keys)."""
        self.box = box

    def _password(self, link: MailboxLink, column: str, code: str) -> str:
        """One decrypted password; an unreadable one is the member's to re-enter (要再認証)."""
        try:
            return self.box.decrypt(getattr(link, column + "_encrypted"), password_context(link.id, column))
        except SecretBoxError as error:
            raise MailboxError(code, UNREADABLE_PASSWORD) from error

    def imap_settings(self, link: MailboxLink, renew: bool = False) -> ServerSettings:
        """The link's IMAP server with its decrypted password (a password has nothing to renew)."""
        return ServerSettings(link.imap_host, link.imap_port, link.imap_security, link.imap_username,
                              self._password(link, "imap_password", "imap_login"))

    def smtp_settings(self, link: MailboxLink, renew: bool = False) -> ServerSettings:
        """The link's SMTP server with its decrypted password (a password has nothing to renew)."""
        return ServerSettings(link.smtp_host, link.smtp_port, link.smtp_security, link.smtp_username,
                              self._password(link, "smtp_password", "smtp_login"), authenticate=link.smtp_auth)


class LinkCredentials:
    """The production CredentialsProvider: password links decrypt their passwords, OAuth2 links get a fresh token."""

    def __init__(self, passwords: StoredPasswords, tokens: OAuthTokens):
        """Serve password links from passwords and OAuth2 links from tokens."""
        self.passwords, self.tokens = passwords, tokens

    def imap_settings(self, link: MailboxLink, renew: bool = False) -> ServerSettings:
        """IMAP settings by the link's own method."""
        if link.uses_oauth:
            return self.tokens.settings(link, "imap", refresh=renew)
        return self.passwords.imap_settings(link)

    def smtp_settings(self, link: MailboxLink, renew: bool = False) -> ServerSettings:
        """SMTP settings by the link's own method."""
        if link.uses_oauth:
            return self.tokens.settings(link, "smtp", refresh=renew)
        return self.passwords.smtp_settings(link)


def _own_session() -> Session:
    """A session of its own for storing refreshed tokens (resolved in the caller's app context)."""
    return Session(db.engine)


def link_credentials(config: Mapping) -> CredentialsProvider:
    """The provider the import and sending use in production, from the app settings: the one place to choose it."""
    box = secret_box(config)
    return LinkCredentials(StoredPasswords(box), OAuthTokens(box, config, _own_session))
