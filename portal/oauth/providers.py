"""The OAuth2 providers a preset can use: Microsoft 365, Google Workspace and any OpenID Connect provider.

Only the discovery URL, the scopes and a few request parameters differ; everything else runs through one
Authlib code path (portal/oauth/client.py).
"""
import re
from dataclasses import dataclass, field
from typing import Mapping

from portal.models.mailbox import OAuthProvider, Security


PROVIDER_LABELS = {OAuthProvider.MICROSOFT: "Microsoft 365", OAuthProvider.GOOGLE: "Google Workspace",
                   OAuthProvider.OIDC: "その他 (OpenID Connect)"}

MICROSOFT_DEFAULT_TENANT = "organizations"
MICROSOFT_MAIL_SCOPES = ("https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send")
GOOGLE_MAIL_SCOPES = ("https://mail.google.com/",)
OIDC_BASE_SCOPES = ("openid", "email", "offline_access")
# A tenant is a GUID, a verified domain, or one of Microsoft's aliases; nothing that could change the URL's path.
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$")


@dataclass(frozen=True)
class ServerDefaults:
    """IMAP and SMTP endpoints filled into a preset for the big providers."""

    imap_host: str
    imap_port: int
    imap_security: Security
    smtp_host: str
    smtp_port: int
    smtp_security: Security


SERVER_DEFAULTS = {
    OAuthProvider.MICROSOFT: ServerDefaults("outlook.office365.com", 993, Security.SSL,
                                            "smtp.office365.com", 587, Security.STARTTLS),
    OAuthProvider.GOOGLE: ServerDefaults("imap.gmail.com", 993, Security.SSL, "smtp.gmail.com", 587, Security.STARTTLS),
}
OPERATOR_CLIENT_SETTINGS = {
    OAuthProvider.MICROSOFT: ("OAUTH_MICROSOFT_CLIENT_ID", "OAUTH_MICROSOFT_CLIENT_SECRET"),
    OAuthProvider.GOOGLE: ("OAUTH_GOOGLE_CLIENT_ID", "OAUTH_GOOGLE_CLIENT_SECRET"),
}


def operator_app_configured(provider: OAuthProvider, environ: Mapping) -> bool:
    """True when the operator's OAUTH_* settings hold a client ID and secret for the provider."""
    names = OPERATOR_CLIENT_SETTINGS.get(provider)
    return bool(names) and all(environ.get(name) for name in names)


@dataclass(frozen=True)
class ProviderApp:
    """A registered application at a provider, as one preset (or the operator's environment) configures it."""

    provider: OAuthProvider
    discovery_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    mail_scopes: tuple[str, ...]  # must all be granted, or the token cannot read mail
    authorize_params: tuple[tuple[str, str], ...] = ()
    tenant: str | None = None

    @property
    def scope(self) -> str:
        """The scope parameter."""
        return " ".join(self.scopes)


class MissingClient(Exception):
    """Neither the preset nor the operator's environment holds a client ID and secret for this provider."""


def provider_app(provider: OAuthProvider, *, client_id: str, client_secret: str, tenant: str | None,
                 discovery_url: str | None, extra_scopes: str | None, environ: Mapping) -> ProviderApp:
    """The application a preset uses; empty client fields fall back to the operator's OAUTH_* settings."""
    env_id, env_secret = (environ.get(name) for name in OPERATOR_CLIENT_SETTINGS.get(provider, ("", "")))
    if provider == OAuthProvider.MICROSOFT:
        tenant = tenant or environ.get("OAUTH_MICROSOFT_TENANT") or MICROSOFT_DEFAULT_TENANT
    if not client_id:
        client_id, client_secret = env_id or "", env_secret or ""
    if not client_id or not client_secret:
        raise MissingClient(provider.value)
    if provider == OAuthProvider.MICROSOFT:
        return ProviderApp(provider, f"https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration",
                           client_id, client_secret, ("openid", "email", "profile", "offline_access",
                                                      *MICROSOFT_MAIL_SCOPES),
                           MICROSOFT_MAIL_SCOPES, (("prompt", "select_account"),), tenant)
    if provider == OAuthProvider.GOOGLE:
        # A refresh token comes only with access_type=offline and prompt=consent.
        return ProviderApp(provider, "https://accounts.google.com/.well-known/openid-configuration", client_id,
                           client_secret, ("openid", "email", *GOOGLE_MAIL_SCOPES), GOOGLE_MAIL_SCOPES,
                           (("access_type", "offline"), ("prompt", "consent")))
    extra = tuple(dict.fromkeys((extra_scopes or "").split()))
    # OpenID Connect: offline_access needs prompt=consent (Core 1.0, section 11).
    return ProviderApp(provider, discovery_url or "", client_id, client_secret,
                       tuple(dict.fromkeys((*OIDC_BASE_SCOPES, *extra))), extra, (("prompt", "consent"),))
