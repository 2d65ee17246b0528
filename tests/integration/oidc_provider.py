"""A real OpenID Connect provider on 127.0.0.1 for the OAuth2 tests, built on Authlib's server side.

It does what Microsoft's and Google's identity platforms do for a mail client, strictly:
- authorization code flow with PKCE enforced (S256; a missing or wrong `code_verifier` is `invalid_grant`/
  `invalid_request`), single-use codes, `nonce` carried into an RS256-signed ID token;
- a sign-in and consent page where the user can deny, or untick a scope (as Google's granular consent allows);
- refresh tokens that rotate (the old one is dead at once, as Microsoft's are), access tokens with a settable
  lifetime (5 seconds in the refresh tests);
- RFC 7009 revocation, RFC 7662 introspection (what Dovecot's oauth2 passdb asks), and a provider-side "revoke
  everything of this user" (an admin revoking sessions, a password change).
Test knobs stand in for a misbehaving or hostile provider: an ID token for another audience, transient errors.
"""
import html
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

import logging

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, g, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from tests.integration.servers import HOST, free_port

# The werkzeug request log would flood the test output.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

MAIL_SCOPE = "mail"  # what Dovecot's oauth2 passdb demands (like https://mail.google.com/ at Google)


@dataclass
class Client:
    """A registered application: the portal (confidential client) or Dovecot (a resource server)."""

    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)

    def get_client_id(self):
        """Authlib: the id."""
        return self.client_id

    def get_default_redirect_uri(self):
        """Authlib: no default; the client must send one."""
        return None

    def get_allowed_scope(self, scope):
        """Authlib: every scope may be asked for (the user decides what is granted)."""
        return scope

    def check_redirect_uri(self, redirect_uri):
        """Authlib: exact match against the registered URIs, as the real providers do."""
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        """Authlib: constant-time secret check."""
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        """Authlib: secret in the Basic header or in the form, at every endpoint."""
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        """Authlib: only the code flow."""
        return response_type == "code"

    def check_grant_type(self, grant_type):
        """Authlib: codes and refresh tokens."""
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class User:
    """An account at the provider."""

    sub: str
    email: str
    email_verified: bool = True


@dataclass
class AuthorizationCode:
    """A single-use code with what was asked and granted."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self):
        """Authlib."""
        return self.redirect_uri

    def get_scope(self):
        """Authlib."""
        return self.scope

    def get_nonce(self):
        """Authlib."""
        return self.nonce

    def get_auth_time(self):
        """Authlib."""
        return self.auth_time

    def get_acr(self):
        """Authlib: no ACR."""
        return None

    def get_amr(self):
        """Authlib: no AMR (an array claim would also crash Dovecot's local JWT validation)."""
        return None


@dataclass
class Token:
    """One access token and its refresh token."""

    client_id: str
    user: User
    scope: str
    access_token: str
    refresh_token: str | None
    issued_at: float
    expires_in: int
    access_revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client):
        """Authlib."""
        return client.client_id == self.client_id

    def get_scope(self):
        """Authlib."""
        return self.scope

    def get_expires_in(self):
        """Authlib."""
        return self.expires_in

    def is_expired(self):
        """Authlib: the access token's lifetime is over."""
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self):
        """Authlib."""
        return self.access_revoked

    def get_user(self):
        """Authlib."""
        return self.user

    def get_client(self):
        """Authlib: unused here."""
        return None


class OidcProvider:
    """The provider: `start()` serves it on 127.0.0.1:<free port>; `issuer` is its base URL."""

    DOVECOT_CLIENT_ID = "dovecot"

    def __init__(self, *, access_token_lifetime: int = 3600, rotate_refresh_tokens: bool = True):
        self.host = HOST
        self.port = free_port()
        self.issuer = f"http://{self.host}:{self.port}"
        self.access_token_lifetime = access_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        # Test knobs for a misbehaving provider.
        self.id_token_audience: str | None = None  # e.g. another client's id
        self.token_errors: list[tuple[int, str]] = []  # queued (status, error) answers of the token endpoint
        self.lock = threading.RLock()
        self.clients: dict[str, Client] = {}
        self.users: dict[str, User] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: list[Token] = []
        self.used_nonces: set[str] = set()
        self.token_requests: list[dict] = []  # grant_type and outcome of every token request, for assertions
        self.dovecot_secret = secrets.token_urlsafe(16)
        self.clients[self.DOVECOT_CLIENT_ID] = Client(self.DOVECOT_CLIENT_ID, self.dovecot_secret)
        self.signing_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig"})
        self.app = self._build_app()
        self._server = None
        self._thread = None

    # ---- lifecycle ----

    def start(self) -> "OidcProvider":
        """Serve on a background thread (threaded: Dovecot and the portal may call at the same time)."""
        self._server = make_server(self.host, self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True)
        self._thread.start()
        requests.get(self.discovery_url, timeout=5).raise_for_status()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self):
        """`with OidcProvider() as provider:` starts it."""
        return self.start()

    def __exit__(self, *exc_info):
        """Stops it."""
        self.stop()

    # ---- set-up and inspection for tests ----

    @property
    def discovery_url(self) -> str:
        """The OpenID Connect discovery document (what a preset's `oauth_discovery_url` holds)."""
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def introspection_url(self) -> str:
        """RFC 7662 endpoint for Dovecot, with Dovecot's own client credentials in the URL (HTTP Basic)."""
        return f"http://{self.DOVECOT_CLIENT_ID}:{self.dovecot_secret}@{self.host}:{self.port}/introspect"

    def register_client(self, redirect_uris: list[str], client_id: str | None = None,
                        client_secret: str | None = None) -> Client:
        """Register an application (the portal) with its exact redirect URIs."""
        client = Client(client_id or f"client-{secrets.token_hex(4)}", client_secret or secrets.token_urlsafe(24),
                        list(redirect_uris))
        with self.lock:
            self.clients[client.client_id] = client
        return client

    def add_user(self, email: str, *, email_verified: bool = True) -> User:
        """An account that can sign in (by its address, no password: the tests are the user)."""
        user = User(sub=f"sub-{secrets.token_hex(8)}", email=email, email_verified=email_verified)
        with self.lock:
            self.users[email.lower()] = user
        return user

    def sign_in(self, authorize_url: str, email: str, *, decision: str = "allow",
                granted_scopes: list[str] | None = None) -> str:
        """Act as the user on the consent page; return the redirect back to the client (its Location)."""
        query = urllib.parse.urlsplit(authorize_url).query
        form = {"email": email, "decision": decision}
        if granted_scopes is None:
            granted_scopes = urllib.parse.parse_qs(query).get("scope", [""])[0].split()
        response = requests.post(f"{self.issuer}/authorize?{query}", data={**form, "grant": granted_scopes},
                                 allow_redirects=False, timeout=10)
        if response.status_code != 302:
            raise AssertionError(f"the provider did not redirect back: {response.status_code} {response.text[:300]}")
        return response.headers["Location"]

    def revoke_user(self, email: str) -> None:
        """Revoke every token of the user at the provider (admin action, password change)."""
        with self.lock:
            for token in self.tokens:
                if token.user.email.lower() == email.lower():
                    token.access_revoked = token.refresh_revoked = True

    def live_refresh_tokens(self, email: str) -> list[str]:
        """Refresh tokens of the user that would still work."""
        with self.lock:
            return [t.refresh_token for t in self.tokens
                    if t.user.email.lower() == email.lower() and t.refresh_token and not t.refresh_revoked]

    def token_record(self, token_string: str) -> Token | None:
        """The record of an access or refresh token."""
        with self.lock:
            return next((t for t in self.tokens if token_string in (t.access_token, t.refresh_token)), None)

    def issue_token_directly(self, client: Client, email: str, scope: str = f"openid email offline_access {MAIL_SCOPE}") -> Token:
        """A token for the user without the browser dance (for tests of IMAP/SMTP, not of the flow)."""
        user = self.users[email.lower()]
        token = Token(client.client_id, user, scope, secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                      time.time(), self.access_token_lifetime)
        with self.lock:
            self.tokens.append(token)
        return token

    # ---- the Flask app ----

    def _build_app(self) -> Flask:
        """Routes: discovery, JWKS, authorize (sign-in and consent), token, revoke, introspect, userinfo."""
        app = Flask("oidc-provider")
        app.config["SECRET_KEY"] = secrets.token_hex(16)
        server = AuthorizationServer(app, query_client=self._query_client, save_token=self._save_token)
        server.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda **_: secrets.token_urlsafe(32),
            refresh_token_generator=lambda **_: secrets.token_urlsafe(32),
            expires_generator=lambda client, grant_type: self.access_token_lifetime))
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            """Codes stored in memory, single use."""

            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, req):
                """Keep the code with the scopes the user actually granted."""
                data = req.payload.data
                with provider.lock:
                    provider.used_nonces.add(data.get("nonce"))
                    provider.codes[code] = AuthorizationCode(
                        code, req.client.client_id, req.payload.redirect_uri, g.granted_scope, req.user,
                        data.get("nonce"), data.get("code_challenge"), data.get("code_challenge_method"),
                        int(time.time()))

            def query_authorization_code(self, code, client):
                """A code of this client that was not used yet."""
                with provider.lock:
                    found = provider.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code):
                """Single use."""
                with provider.lock:
                    provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                """The user who consented."""
                return authorization_code.user

        class RefreshGrant(grants.RefreshTokenGrant):
            """Rotating refresh tokens: the old one dies when a new one is issued."""

            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            @property
            def INCLUDE_NEW_REFRESH_TOKEN(self):  # noqa: N802 (Authlib's name)
                """Rotation on or off per provider."""
                return provider.rotate_refresh_tokens

            def authenticate_refresh_token(self, refresh_token):
                """A live refresh token."""
                with provider.lock:
                    token = next((t for t in provider.tokens if t.refresh_token == refresh_token), None)
                return token if token and not token.refresh_revoked else None

            def authenticate_user(self, credential):
                """The token's user."""
                return credential.user

            def revoke_old_credential(self, credential):
                """Rotation: the old refresh token can never be used again."""
                if provider.rotate_refresh_tokens:
                    with provider.lock:
                        credential.refresh_revoked = True

        class IdToken(OpenIDCode):
            """RS256 ID tokens with the nonce, the verified email and (knob) another audience."""

            def resolve_client_private_key(self, client):
                """The provider's signing key."""
                return provider.signing_key

            def get_client_algorithm(self, client):
                """RS256, as the big providers sign."""
                return "RS256"

            def get_encode_header(self, client):
                """alg and kid, so clients pick the key from the JWKS."""
                return {"alg": "RS256", "kid": "test-key-1"}

            def get_client_claims(self, client):
                """iss and aud (aud replaceable by the misbehaving-provider knob)."""
                return {"iss": provider.issuer, "aud": [provider.id_token_audience or client.client_id]}

            def exists_nonce(self, nonce, req):
                """A nonce a code was already issued for is a replay."""
                with provider.lock:
                    return nonce in provider.used_nonces

            def generate_user_info(self, user, scope):
                """sub always; email and email_verified with the email scope."""
                info = UserInfo(sub=user.sub)
                if "email" in scope.split():
                    info["email"] = user.email
                    info["email_verified"] = user.email_verified
                return info

        class Revocation(RevocationEndpoint):
            """RFC 7009: revoking either token kills both (as Google does)."""

            CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def query_token(self, token_string, token_type_hint):
                """Find the record."""
                return provider.token_record(token_string)

            def revoke_token(self, token, req):
                """Revoke access and refresh token."""
                with provider.lock:
                    token.access_revoked = token.refresh_revoked = True

        class Introspection(IntrospectionEndpoint):
            """RFC 7662 for Dovecot: active, scope and the username Dovecot compares with the login name."""

            CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def query_token(self, token_string, token_type_hint):
                """Only access tokens log in to mail."""
                with provider.lock:
                    return next((t for t in provider.tokens if t.access_token == token_string), None)

            def check_permission(self, token, client, req):
                """Only the resource server may ask."""
                return client.client_id == provider.DOVECOT_CLIENT_ID

            def introspect_token(self, token):
                """The claims Dovecot reads."""
                return {"active": True, "scope": token.scope, "client_id": token.client_id,
                        "username": token.user.email, "sub": token.user.sub, "token_type": "Bearer",
                        "exp": int(token.issued_at + token.expires_in), "iat": int(token.issued_at)}

        server.register_grant(CodeGrant, [CodeChallenge(required=True), IdToken(require_nonce=True)])
        server.register_grant(RefreshGrant)
        server.register_endpoint(Revocation)
        server.register_endpoint(Introspection)

        @app.get("/.well-known/openid-configuration")
        def discovery():
            """OpenID Connect discovery."""
            base = provider.issuer
            return jsonify({
                "issuer": base, "authorization_endpoint": f"{base}/authorize", "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks", "revocation_endpoint": f"{base}/revoke",
                "introspection_endpoint": f"{base}/introspect", "userinfo_endpoint": f"{base}/userinfo",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "offline_access", MAIL_SCOPE],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
            })

        @app.get("/jwks")
        def jwks():
            """The public signing key."""
            return jsonify({"keys": [provider.signing_key.as_dict(private=False)]})

        @app.get("/authorize")
        def authorize_page():
            """Sign-in and consent page (validates the request first, as real providers do)."""
            try:
                grant = server.get_consent_grant(end_user=None)
            except Exception as error:  # noqa: BLE001 - an invalid client or redirect URI is shown, never redirected
                return f"<p id='error'>{html.escape(str(error))}</p>", 400
            scopes = grant.request.payload.scope.split()
            boxes = "".join(
                f"<label><input type='checkbox' name='grant' value='{html.escape(s)}' checked> {html.escape(s)}"
                "</label><br>" for s in scopes)
            # An empty icon: a browser would otherwise ask for /favicon.ico and log the 404.
            return (f"<!doctype html><title>Test OpenID Provider</title><link rel='icon' href='data:,'>"
                    f"<h1>Test OpenID Provider</h1>"
                    f"<form method='post'><p>Sign in to {html.escape(grant.client.client_id)}</p>"
                    f"<input name='email' type='email' aria-label='email'><br>{boxes}"
                    "<button name='decision' value='allow'>Allow</button>"
                    "<button name='decision' value='deny'>Deny</button></form>")

        @app.post("/authorize")
        def authorize_decision():
            """Deny, or sign the user in and grant the ticked scopes."""
            try:
                grant = server.get_consent_grant(end_user=None)
            except Exception as error:  # noqa: BLE001 - as above
                return f"<p id='error'>{html.escape(str(error))}</p>", 400
            if request.form.get("decision") != "allow":
                return server.create_authorization_response(grant_user=None, grant=grant)
            user = provider.users.get(request.form.get("email", "").lower())
            if user is None:
                return "<p id='error'>unknown user</p>", 400
            requested = request.args.get("scope", "").split()
            granted = set(request.form.getlist("grant"))
            g.granted_scope = " ".join(s for s in requested if s in granted)
            return server.create_authorization_response(grant_user=user, grant=grant)

        @app.post("/token")
        def token_endpoint():
            """Tokens; a queued test error answers first (a provider outage)."""
            with provider.lock:
                queued = provider.token_errors.pop(0) if provider.token_errors else None
            if queued:
                status, error = queued
                provider.token_requests.append({"grant_type": request.form.get("grant_type"), "status": status})
                return jsonify({"error": error}), status
            response = server.create_token_response()
            provider.token_requests.append({"grant_type": request.form.get("grant_type"),
                                            "status": response.status_code})
            return response

        @app.post("/revoke")
        def revoke():
            """RFC 7009."""
            return server.create_endpoint_response("revocation")

        @app.post("/introspect")
        def introspect():
            """RFC 7662."""
            return server.create_endpoint_response("introspection")

        @app.get("/userinfo")
        def userinfo():
            """The signed-in user's claims for a live bearer token."""
            auth = request.headers.get("Authorization", "")
            token = provider.token_record(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
            if token is None or token.is_expired() or token.is_revoked():
                return jsonify({"error": "invalid_token"}), 401
            return jsonify({"sub": token.user.sub, "email": token.user.email,
                            "email_verified": token.user.email_verified})

        return app

    def _query_client(self, client_id):
        """Authlib: look a client up."""
        with self.lock:
            return self.clients.get(client_id)

    def _save_token(self, token_data, req):
        """Authlib: keep an issued token (the code grant's or a refresh)."""
        token = Token(req.client.client_id, req.user, token_data.get("scope", ""), token_data["access_token"],
                      token_data.get("refresh_token"), time.time(), int(token_data["expires_in"]))
        if token.refresh_token is None and req.refresh_token is not None:  # no rotation: the old one lives on
            token.refresh_token = req.refresh_token.refresh_token
            with self.lock:
                req.refresh_token.refresh_token = None
        with self.lock:
            self.tokens.append(token)
