"""メールボックス連携 by OAuth2: 「… でサインインして連携」 starts the code flow, the callback finishes it."""
import re
import secrets
import time
from urllib.parse import urlsplit

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template, request, session,
                   url_for)

from portal.extensions import db
from portal.headers import DEFAULT_CSP
from portal.feature_contracts import FeatureOff, is_enabled
from portal.mailbox import checks, oauth, services
from portal.mailbox.credentials import secret_box
from portal.mailsync.connection import MailboxError
from portal.models import LinkState, MailboxPreset, OAuthProvider, utcnow
from portal.oauth.client import OAuthError
from portal.oauth.providers import PROVIDER_LABELS
from portal.policy import Action
from portal.scoping import get_in_account
from portal.web import current_membership, get_scoped_or_404, permission_required

bp = Blueprint("mailbox_oauth", __name__, url_prefix="/settings/mailbox/oauth")

PENDING_KEY = "oauth_link"
PENDING_MAX_AGE_SECONDS = 600
CALLBACK_PATH = "/settings/mailbox/oauth/callback"


NO_PUBLIC_BASE_URL = ("ポータルの公開URL（環境変数 PUBLIC_BASE_URL）がまだ設定されていないため、サインインで連携できません。"
                      "サーバー管理者（ポータルを運用している担当者）に設定を依頼してください。")


def redirect_uri() -> str | None:
    """PUBLIC_BASE_URL + the callback path: what the company registers at the provider; None while it is unset.

    No fallback to the request's host: behind a proxy that is an internal address, and it is not what the
    preset screen showed the company to register, so the provider would refuse it with an error of its own."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    return base + CALLBACK_PATH if base else None


# Where each provider's sign-in page lives (its authorization endpoint's origin); an OpenID Connect provider's is
# taken to be its discovery URL's (true of Entra, Google, Keycloak, Okta, Auth0).
SIGN_IN_ORIGINS = {OAuthProvider.MICROSOFT: "https://login.microsoftonline.com",
                   OAuthProvider.GOOGLE: "https://accounts.google.com"}
_PLAIN_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")


def sign_in_origin(preset: MailboxPreset) -> str | None:
    """The origin of the preset's sign-in page, or None when it cannot be told safely."""
    if preset.oauth_provider in SIGN_IN_ORIGINS:
        return SIGN_IN_ORIGINS[preset.oauth_provider]
    parts = urlsplit(preset.oauth_discovery_url or "")
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if _PLAIN_ORIGIN.fullmatch(origin) else None


def allow_sign_in_redirects(response: Response, presets) -> Response:
    """Let the page's sign-in forms end at the providers: browsers apply the page's CSP form-action to every
    redirect of a form submission, so 'self' alone would stop 「… でサインインして連携」 at the portal's redirect."""
    origins = sorted({origin for preset in presets if preset is not None and preset.uses_oauth
                      and (origin := sign_in_origin(preset))})
    if origins:
        response.headers["Content-Security-Policy"] = DEFAULT_CSP.replace(
            "form-action 'self'", "form-action 'self' " + " ".join(origins))
    return response


def sign_in_label(preset: MailboxPreset) -> str:
    """「Microsoft 365 でサインインして連携」 and so on."""
    name = PROVIDER_LABELS[preset.oauth_provider] if preset.oauth_provider.value != "oidc" else preset.name
    return f"{name} でサインインして連携"


def refused(message: str, status: int = 400):
    """The member's explanation of a refused link; nothing was stored."""
    return render_template("mailbox/oauth_refused.html", message=message), status


@bp.post("/start")
@permission_required(Action.LINK_OWN_MAILBOX)
def start():
    """Bind state, nonce and a PKCE verifier to the member's session and send the browser to the provider."""
    membership = current_membership()
    if not is_enabled(db.session, membership.account_id):
        return refused("メール機能がオフのため、連携できません。", 409)
    link = services.live_link(db.session, membership.id)
    if link is not None and not (link.uses_oauth and link.state == LinkState.REAUTH):
        flash("すでにメールボックスを連携しています。", "warning")
        return redirect(url_for("mailbox.index"))
    if link is not None:
        preset = link.preset
    else:
        raw_id = request.form.get("preset_id", "").strip()
        if not raw_id.isascii() or not raw_id.isdigit():
            return refused("推奨設定を選び直してください。")
        if not 0 < int(raw_id) < 2 ** 31:  # past PostgreSQL's integer: no such preset (not a 500)
            abort(404)
        preset = get_scoped_or_404(MailboxPreset, int(raw_id))
    if preset is None or not preset.uses_oauth:
        return refused("この推奨設定はOAuth2のサインインに対応していません。推奨設定を選び直してください。")
    if redirect_uri() is None:
        return refused(NO_PUBLIC_BASE_URL, 409)
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    try:
        client = oauth.provider_client(preset, secret_box(current_app.config), current_app.config)
        # The discovery document may need fetching: in the check pool, like every call a member waits on.
        url = checks.gate().run(membership.id, client.authorization_url, redirect_uri(), state, nonce, verifier)
    except OAuthError as error:
        return refused(error.message, 502 if error.code == "provider_unavailable" else 400)
    except checks.CheckRefused as busy:
        return refused(busy.message, 429)
    session[PENDING_KEY] = {"state": state, "nonce": nonce, "verifier": verifier, "preset_id": preset.id,
                            "membership_id": membership.id, "link_id": link.id if link else None,
                            "started": int(time.time())}
    return redirect(url)


@bp.get("/callback")
@permission_required(Action.LINK_OWN_MAILBOX)
def callback():
    """The provider's redirect back: check state, exchange the code, verify the mailbox, then link or resume."""
    membership = current_membership()
    pending = session.pop(PENDING_KEY, None)  # single use: a replayed callback finds nothing
    state = request.args.get("state", "")
    if (not pending or not secrets.compare_digest(str(pending.get("state", "")), state)
            or pending.get("membership_id") != membership.id
            or time.time() - pending.get("started", 0) > PENDING_MAX_AGE_SECONDS):
        return refused("サインインの手続きを確認できませんでした（有効期限切れ、または別の画面から始めた手続きです）。"
                       "メールボックス連携の画面から、もう一度サインインしてください。")
    error = request.args.get("error")
    if error == "access_denied":
        return refused("サインインまたはメールへのアクセスの許可がキャンセルされました。連携するには、"
                       "確認画面でアクセスを許可してください。")
    if error or not request.args.get("code"):
        return refused("認証サーバーがエラーを返しました。しばらくしてからもう一度お試しください。"
                       "続く場合は、推奨設定（クライアントID・リダイレクトURI）を管理者に確認してください。")
    if redirect_uri() is None:  # unset since the flow started: the code is bound to a URI we cannot repeat
        return refused(NO_PUBLIC_BASE_URL, 409)
    preset = get_in_account(db.session, MailboxPreset, pending["preset_id"], membership.account_id)
    if preset is None or not preset.uses_oauth:
        return refused("推奨設定が見つかりません。推奨設定を選び直してください。")
    box = secret_box(current_app.config)
    try:
        client = oauth.provider_client(preset, box, current_app.config)
        tokens, identity = checks.gate().run(membership.id, client.exchange_code, request.args["code"],
                                             redirect_uri(), pending["verifier"], pending["nonce"])
    except OAuthError as error:
        return refused(error.message, 502 if error.code == "provider_unavailable" else 400)
    except checks.CheckRefused as busy:
        return refused(busy.message, 429)
    policy = services.connection_policy(current_app.config, interactive=True)
    verifier = checks.checked_verifier(membership.id)
    try:
        if pending.get("link_id"):
            link = services.live_link(db.session, membership.id)
            if link is None or link.id != pending["link_id"]:
                return refused("連携が見つかりません。メールボックス連携の画面からやり直してください。")
            oauth.reauthorize_oauth_link(db.session, link, identity, tokens, policy, box, utcnow(), verifier)
            flash("再度サインインしました。前回の続きからメールを取り込みます。", "success")
        else:
            oauth.link_oauth_mailbox(db.session, membership, preset, identity, tokens, policy, box, utcnow(),
                                     verifier)
            flash("メールボックスを連携しました。これ以降に送受信したお客様とのメールが取り込まれます。", "success")
    except (MailboxError, FeatureOff, oauth.AlreadyLinked, oauth.WrongAccount, oauth.PresetGone,
            checks.CheckRefused) as failure:
        db.session.rollback()
        _revoke_quietly(client, tokens.refresh_token)  # nothing is kept, at the provider either
        return refused(_failure_message(failure), 429 if isinstance(failure, checks.CheckRefused) else 400)
    return redirect(url_for("mailbox.index"))


def _failure_message(failure: Exception) -> str:
    """The member's words for a link that could not be completed."""
    if isinstance(failure, (MailboxError, checks.CheckRefused)):
        return failure.message
    if isinstance(failure, FeatureOff):
        return "メール機能がオフのため、連携できません。"
    if isinstance(failure, oauth.PresetGone):
        return "連携の手続き中に、選んだ推奨設定が削除されました。推奨設定を選び直してから、もう一度サインインしてください。"
    if isinstance(failure, oauth.WrongAccount):
        return "連携中のメールボックスとは別のアカウントでサインインしました。同じアカウントでサインインしてください。"
    return "すでにメールボックスを連携しています。"


def _revoke_quietly(client, refresh_token: str | None) -> None:
    """Best effort: give back a token we will not keep."""
    if refresh_token:
        try:
            client.revoke(refresh_token)
        except OAuthError:
            pass
