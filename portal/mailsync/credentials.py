"""The credentials seam: how the engine and sending get a link's server settings with something to log in with."""
from typing import Protocol

from portal.mailsync.connection import ServerSettings
from portal.models import MailboxLink


class CredentialsProvider(Protocol):
    """A link's IMAP and SMTP settings ready to log in (stored passwords today, refreshed OAuth2 tokens later).

    Both methods raise MailboxError (code imap_login / smtp_login, a Japanese message) when the link's stored
    secrets cannot be used, so a pass records 要再認証 and a send fails with words the member understands.
    OAuth2 links also raise oauth_reauth (the provider refused the refresh token: 要再認証) and oauth_unavailable
    (the provider is down: エラー, retried with backoff).

    `renew=True` says the server just refused what the last call returned (an access token that died early):
    a provider with renewable credentials gets new ones (an OAuth2 refresh); passwords come back unchanged.
    """

    def imap_settings(self, link: MailboxLink, renew: bool = False) -> ServerSettings:
        """Where and as whom to reach the link's IMAP server."""
        ...

    def smtp_settings(self, link: MailboxLink, renew: bool = False) -> ServerSettings:
        """Where and as whom to reach the link's SMTP server."""
        ...
