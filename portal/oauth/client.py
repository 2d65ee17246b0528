"""Talking to an OAuth2/OpenID Connect provider with Authlib: discovery, the code flow, refresh and revocation.

No Flask here: the link flow (portal/mailbox), the sync's credentials provider and sending all call these
functions. Every failure becomes an OAuthError with a code for the program and a Japanese message for the member;
tokens never appear in a message, a log line or a repr.
"""
import ipaddress
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from authlib.integrations.base_client.errors import OAuthError as AuthlibOAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError as JoserfcError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from portal.mailsync import network
from portal.mailsync.network import parse_networks  # noqa: F401 - the presets' and tests' entry point
from portal.oauth.providers import OAuthProvider, ProviderApp

METADATA_TTL_SECONDS = 3600
MICROSOFT_ISSUER = "https://login.microsoftonline.com/{tid}/v2.0"


class OAuthError(Exception):
    """A provider problem: `code` for the program, `message` in the member's words."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _provider_unavailable() -> OAuthError:
    """Transient: the provider did not answer or answered 5xx."""
    return OAuthError("provider_unavailable", "認証サーバー（Microsoft・Google など）に接続できません。"
                                              "しばらくしてから自動的に再試行します。")


def invalid_grant() -> OAuthError:
    """The refresh token is dead (revoked, password changed, expired): only a new sign-in helps."""
    return OAuthError("invalid_grant", "サインインの有効期限が切れたか、取り消されました"
                                       "（パスワード変更・管理者による取り消しなど）。"
                                       "「再度サインインして連携」からもう一度サインインしてください。")


@dataclass(frozen=True)
class UrlPolicy:
    """Where the portal may send OAuth requests: https only, unless plaintext is allowed for opened networks."""

    allow_plaintext: bool = False
    allowed_networks: tuple = ()
    timeout: float = 15.0


def address_opened(address: str, allowed_networks: tuple) -> bool:
    """True when the address is in one of the networks the operator opened."""
    ip = ipaddress.ip_address(address)
    return any(ip.version == net.version and ip in net for net in allowed_networks)


def check_url(url: str, policy: UrlPolicy, what: str = "認証サーバーのURL") -> None:
    """Refuse a provider URL the operator's rules do not allow (scheme, credentials, guarded addresses)."""
    parts = urllib.parse.urlsplit(url)
    refused = OAuthError("url_refused", f"{what}は https:// で始まる必要があります。")
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise refused
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443,
                                                               proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError, ValueError) as error:
        raise OAuthError("url_unresolvable", f"{what}のホスト名が見つかりません。") from error
    opened = all(address_opened(a.split("%")[0], policy.allowed_networks) for a in addresses)
    if parts.scheme == "http" and not (policy.allow_plaintext and opened):
        raise refused
    # Loopback, link-local and unspecified addresses are refused unless the operator opens them, as for mail hosts.
    if not all(network.is_allowed(address, policy.allowed_networks) for address in addresses):
        raise OAuthError("url_refused", f"{what}のアドレスには接続できません。")


class _CheckedAddressConnection:
    """urllib3 connection mixin: connect to the address checked under the operator's networks, resolved once.

    check_url looked the name up before; without this, urllib3 would look it up again when connecting, and a name
    that changes its answer in between (DNS rebinding) would reach a guarded address. TLS still checks the name.
    """

    allowed_networks: tuple = ()

    def _new_conn(self):
        try:
            return network.open_socket(self._dns_host, self.port, self.allowed_networks, self.timeout)
        except network.AddressRefused as error:
            raise NewConnectionError(self, "the address is in a network the portal may not connect to") from error
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error
        except TimeoutError as error:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from error
        except OSError as error:
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error


def checked_address_adapter(allowed_networks: tuple) -> HTTPAdapter:
    """A requests adapter whose connections go only to addresses the operator's networks allow."""
    attributes = {"allowed_networks": tuple(allowed_networks)}
    http_connection = type("CheckedHTTPConnection", (_CheckedAddressConnection, HTTPConnection), attributes)
    https_connection = type("CheckedHTTPSConnection", (_CheckedAddressConnection, HTTPSConnection), attributes)
    adapter = HTTPAdapter(max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = {
        "http": type("CheckedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_connection}),
        "https": type("CheckedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_connection})}
    return adapter


@dataclass(frozen=True)
class TokenSet:
    """Tokens from the provider; repr hides them so they never reach a log."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime
    scope: str


@dataclass(frozen=True)
class Identity:
    """Who signed in, from the validated ID token."""

    subject: str
    email: str


_metadata_cache: dict[str, tuple[float, dict]] = {}
_metadata_lock = threading.Lock()


class ProviderClient:
    """One provider application: discovery, authorize URL, code exchange, refresh, revocation."""

    def __init__(self, app: ProviderApp, policy: UrlPolicy):
        self.app = app
        self.policy = policy

    # ---- discovery ----

    def metadata(self) -> dict:
        """The provider's discovery document (cached for an hour per URL), every endpoint checked."""
        now = time.monotonic()
        with _metadata_lock:
            cached = _metadata_cache.get(self.app.discovery_url)
        if cached and now - cached[0] < METADATA_TTL_SECONDS:
            return cached[1]
        check_url(self.app.discovery_url, self.policy, "ディスカバリーURL")
        try:
            response = self._http().get(self.app.discovery_url, timeout=self.policy.timeout)
            document = response.json() if response.status_code == 200 else None
        except (requests.RequestException, ValueError) as error:
            raise _provider_unavailable() from error
        if not isinstance(document, dict) or not all(
                isinstance(document.get(key), str) for key in ("issuer", "authorization_endpoint", "token_endpoint",
                                                               "jwks_uri")):
            raise OAuthError("discovery_invalid", "ディスカバリーURLから OpenID Connect の設定を読み取れません。"
                                                  "URLを確認してください。")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "revocation_endpoint"):
            if document.get(key):
                check_url(document[key], self.policy)
        with _metadata_lock:
            _metadata_cache[self.app.discovery_url] = (now, document)
        return document

    # ---- the code flow ----

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, code_verifier: str) -> str:
        """Where the member's browser goes: PKCE S256, state, nonce and the provider's own parameters."""
        session = self._session(redirect_uri=redirect_uri)
        url, _ = session.create_authorization_url(self.metadata()["authorization_endpoint"], state=state,
                                                  nonce=nonce, code_verifier=code_verifier,
                                                  **dict(self.app.authorize_params))
        return url

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> tuple[TokenSet, Identity]:
        """Trade the code for tokens; check the mail scopes and the ID token (signature, audience, nonce, email)."""
        metadata = self.metadata()
        session = self._session(redirect_uri=redirect_uri)
        token = self._token_call(lambda: session.fetch_token(metadata["token_endpoint"], code=code,
                                                             code_verifier=code_verifier), exchanging=True)
        try:
            return self._checked(token, nonce, metadata)
        except OAuthError:
            if token.get("refresh_token"):  # a token we will not keep is given back
                try:
                    self.revoke(token["refresh_token"])
                except OAuthError:
                    pass
            raise

    def _checked(self, token: dict, nonce: str, metadata: dict) -> tuple[TokenSet, Identity]:
        """The exchanged token's checks: access token, mail scopes, refresh token, ID token."""
        if not token.get("access_token"):
            raise OAuthError("provider_error", "認証サーバーからアクセストークンを受け取れませんでした。")
        granted = set(str(token.get("scope") or self.app.scope).split())
        if not set(self.app.mail_scopes) <= granted:
            raise OAuthError("mail_scope_missing", "メールへのアクセスが許可されていません。サインイン時の確認画面で、"
                                                   "メールの読み取りと送信をすべて許可してください。")
        if not token.get("refresh_token"):
            raise OAuthError("no_refresh_token", "認証サーバーからリフレッシュトークンを受け取れませんでした。"
                                                 "オフラインアクセスを許可してもう一度お試しください。")
        return _token_set(token), self._identity(token, nonce, metadata)

    def refresh(self, refresh_token: str) -> TokenSet:
        """A new access token (and, where the provider rotates them, a new refresh token)."""
        metadata = self.metadata()
        session = self._session()
        token = self._token_call(lambda: session.refresh_token(metadata["token_endpoint"],
                                                               refresh_token=refresh_token))
        return _token_set(token, fallback_refresh=refresh_token)

    def revoke(self, token: str) -> bool:
        """Revoke a refresh token where the provider has RFC 7009 revocation; False when it has none."""
        endpoint = self.metadata().get("revocation_endpoint")
        if not endpoint:
            return False
        try:
            response = self._session().revoke_token(endpoint, token, token_type_hint="refresh_token")
        except requests.RequestException as error:
            raise _provider_unavailable() from error
        if response.status_code >= 500:
            raise _provider_unavailable()
        return response.status_code == 200

    # ---- helpers ----

    def _http(self) -> requests.Session:
        """A requests session that never follows redirects (a redirect could lead past check_url)."""
        http = requests.Session()
        http.max_redirects = 0
        http.trust_env = False
        self._pin(http)
        return http

    def _pin(self, http: requests.Session) -> None:
        """Connect only to checked addresses, resolved once per connection."""
        adapter = checked_address_adapter(self.policy.allowed_networks)
        http.mount("https://", adapter)
        http.mount("http://", adapter)

    def _session(self, **kwargs) -> OAuth2Session:
        """Authlib's client for this application."""
        session = OAuth2Session(self.app.client_id, self.app.client_secret, scope=self.app.scope,
                                code_challenge_method="S256", token_endpoint_auth_method="client_secret_post",
                                timeout=self.policy.timeout, **kwargs)
        session.max_redirects = 0
        session.trust_env = False
        self._pin(session)
        for hook in ("access_token_response", "refresh_token_response"):
            session.register_compliance_hook(hook, _raise_on_server_error)
        return session

    def _token_call(self, call, exchanging: bool = False) -> dict:
        """Run a token request, mapping provider answers to OAuthError."""
        try:
            return dict(call())
        except AuthlibOAuthError as error:
            if error.error == "invalid_grant":
                if exchanging:
                    raise OAuthError("code_rejected", "認証サーバーが認可コードを受け付けませんでした"
                                                      "（使用済み・期限切れ・検証コードの不一致）。"
                                                      "もう一度サインインしてください。") from None
                raise invalid_grant() from None
            if error.error in ("temporarily_unavailable", "server_error"):
                raise _provider_unavailable() from None
            if error.error in ("invalid_client", "unauthorized_client"):
                raise OAuthError("client_rejected", "認証サーバーがクライアントIDまたはクライアントシークレットを"
                                                    "受け付けませんでした。推奨設定を確認してください"
                                                    "（シークレットの有効期限切れなど）。") from None
            raise OAuthError("provider_error", "認証サーバーがエラーを返しました。"
                                               "しばらくしてからもう一度お試しください。") from None
        except (requests.RequestException, ValueError) as error:
            raise _provider_unavailable() from error

    def _identity(self, token: dict, nonce: str, metadata: dict) -> Identity:
        """Validate the ID token and return the signed-in address."""
        if not token.get("id_token"):
            raise OAuthError("id_token_invalid", "認証サーバーからIDトークンを受け取れませんでした。")
        invalid = OAuthError("id_token_invalid", "IDトークンを検証できません（発行者・宛先・署名・nonce の不一致）。"
                                                 "もう一度サインインしてください。")
        try:
            keys = self._http().get(metadata["jwks_uri"], timeout=self.policy.timeout)
            keys.raise_for_status()
            key_set = KeySet.import_key_set(keys.json())
        except (requests.RequestException, ValueError, JoserfcError) as error:
            raise _provider_unavailable() from error
        try:
            decoded = jwt.decode(token["id_token"], key=key_set, registry=JWSRegistry(
                algorithms=metadata.get("id_token_signing_alg_values_supported") or ["RS256"]))
            if self.app.provider == OAuthProvider.MICROSOFT:
                # /organizations and /common publish a templated issuer: check it against the token's tenant.
                options = {"iss": {"essential": True}}
            else:
                options = {"iss": {"essential": True, "values": [metadata["issuer"]]}}
            claims = CodeIDToken(decoded.claims, decoded.header, options,
                                 {"nonce": nonce, "client_id": self.app.client_id,
                                  "access_token": token["access_token"]})
            claims.validate(leeway=120)
        except (JoserfcError, ValueError, KeyError) as error:
            raise invalid from error
        if self.app.provider == OAuthProvider.MICROSOFT:
            tid = str(claims.get("tid") or "")
            if claims.get("iss") != MICROSOFT_ISSUER.format(tid=tid) or (
                    _is_guid(self.app.tenant) and tid.lower() != self.app.tenant.lower()):
                raise invalid
            # Entra ID tokens carry no email_verified; the IMAP XOAUTH2 login that follows proves the mailbox.
            email = claims.get("email") or claims.get("preferred_username")
        else:
            email = claims.get("email") if claims.get("email_verified") is True else None
        if not isinstance(email, str) or "@" not in email:
            raise OAuthError("email_unverified", "サインインしたアカウントの確認済みメールアドレスを取得できません。"
                                                 "メールボックスのアカウントでサインインしてください。")
        return Identity(str(claims["sub"]), email.strip().lower())


def _is_guid(value: str | None) -> bool:
    """A tenant given as its directory ID."""
    return bool(value) and len(value) == 36 and value.count("-") == 4


def _raise_on_server_error(response):
    """Authlib hook: a 5xx without an OAuth error body is a transient outage."""
    if response.status_code >= 500:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "error" not in body:
            raise _provider_unavailable()
    return response


def _token_set(token: dict, fallback_refresh: str | None = None) -> TokenSet:
    """Authlib's token dict as a TokenSet (expires_at from expires_in; one hour if the provider says nothing)."""
    expires_at = token.get("expires_at") or (time.time() + int(token.get("expires_in") or 3600))
    return TokenSet(token["access_token"], token.get("refresh_token") or fallback_refresh,
                    datetime.fromtimestamp(int(expires_at), timezone.utc), str(token.get("scope") or ""))
