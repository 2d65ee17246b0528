"""OAuth2 links: the provider app of a preset, tokens stored like passwords, refresh with rotation, revocation."""
import logging
import threading
from datetime import datetime, timedelta
from typing import Callable, Mapping

from flask import current_app, has_app_context
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from portal import audit
from portal.extensions import db
from portal.feature_contracts import FeatureOff, is_enabled
from portal.mailsync.connection import ConnectionPolicy, MailboxError, ServerSettings
from portal.mailsync.verify import verify_mailbox
from portal.models import EMAIL_FEATURE, AuthMethod, MailboxFolder, MailboxLink, MailboxPreset, utcnow
from portal.models.mailbox import LinkState
from portal.oauth.client import Identity, OAuthError, ProviderClient, TokenSet, UrlPolicy, parse_networks
from portal.oauth.providers import MissingClient, provider_app
from portal.secretbox import SecretBox, SecretBoxError

log = logging.getLogger(__name__)

# Refreshed before a pass or a send when it expires within this margin.
REFRESH_MARGIN = timedelta(minutes=5)
Verifier = Callable[[ServerSettings, ServerSettings, ConnectionPolicy], list]
REVOCATIONS_KEY = "oauth_revocations"
UNREADABLE_TOKEN = "保存されているトークンを復号できません。「再度サインインして連携」からサインインし直してください。"

_locks_guard = threading.Lock()
_link_locks: dict[int, threading.Lock] = {}


def token_context(link_id: int, column: str) -> str:
    """Binds a token's ciphertext to one link row and column (the same scheme as passwords)."""
    return f"mailbox_links:{link_id}:{column}"


def preset_secret_context(preset_id: int) -> str:
    """Binds a preset's client secret to its row."""
    return f"mailbox_presets:{preset_id}:oauth_client_secret"


def url_policy(config: Mapping) -> UrlPolicy:
    """Where OAuth requests may go: https, or http on networks the operator opened with plaintext allowed."""
    return UrlPolicy(allow_plaintext=bool(config.get("MAIL_ALLOW_PLAINTEXT")),
                     allowed_networks=parse_networks(config.get("MAIL_ALLOWED_NETWORKS")),
                     timeout=float(config.get("MAIL_TIMEOUT_SECONDS", 15)))


def provider_client(preset: MailboxPreset, box: SecretBox, config: Mapping) -> ProviderClient:
    """The preset's provider app (empty client fields: the operator's OAUTH_* settings).

    Raises OAuthError("client_missing") when neither holds a client, or the stored secret cannot be read.
    """
    try:
        secret = (box.decrypt(preset.oauth_client_secret_encrypted, preset_secret_context(preset.id))
                  if preset.oauth_client_secret_encrypted else "")
        app = provider_app(preset.oauth_provider, client_id=preset.oauth_client_id or "", client_secret=secret,
                           tenant=preset.oauth_tenant, discovery_url=preset.oauth_discovery_url,
                           extra_scopes=preset.oauth_scopes, environ=config)
    except (MissingClient, SecretBoxError) as error:
        raise OAuthError("client_missing", "推奨設定にOAuth2のクライアントIDとクライアントシークレットがありません。"
                                           "管理者に推奨設定の確認を依頼してください。") from error
    return ProviderClient(app, url_policy(config))


def store_tokens(link: MailboxLink, tokens: TokenSet, box: SecretBox) -> None:
    """Encrypt both tokens into the link (bound to its row); the caller commits."""
    link.oauth_access_token_encrypted = box.encrypt(tokens.access_token,
                                                    token_context(link.id, "oauth_access_token"))
    if tokens.refresh_token:
        link.oauth_refresh_token_encrypted = box.encrypt(tokens.refresh_token,
                                                         token_context(link.id, "oauth_refresh_token"))
    link.oauth_expires_at = tokens.expires_at


def wipe_tokens(link: MailboxLink) -> None:
    """Forget both tokens (unlink)."""
    link.oauth_access_token_encrypted = ""
    link.oauth_refresh_token_encrypted = ""
    link.oauth_expires_at = None


def _lock_for(link_id: int) -> threading.Lock:
    """One refresh at a time per link in this process (SQLite has no row locks; rotation forbids two refreshes)."""
    with _locks_guard:
        return _link_locks.setdefault(link_id, threading.Lock())


def _as_mailbox_error(error: OAuthError) -> MailboxError:
    """invalid_grant is 要再認証; anything else from the provider is エラー with the usual backoff."""
    if error.code == "invalid_grant":
        return MailboxError("oauth_reauth", error.message)
    return MailboxError("oauth_unavailable", error.message)


class OAuthTokens:
    """Fresh access tokens for OAuth2 links, refreshing and storing rotated tokens in their own transaction."""

    def __init__(self, box: SecretBox, config: Mapping, session_factory: Callable[[], Session],
                 clock: Callable[[], datetime] = utcnow):
        """Decrypt with box; store refreshed tokens through sessions from session_factory."""
        self.box, self.config, self.session_factory, self.clock = box, config, session_factory, clock

    def access_token(self, link: MailboxLink, refresh: bool = False) -> str:
        """The link's access token, refreshed first when it expires within 5 minutes (or when refresh is set)."""
        expires = link.oauth_expires_at
        if not refresh and expires is not None and expires - self.clock() > REFRESH_MARGIN:
            return self._decrypt(link, "oauth_access_token")
        with _lock_for(link.id):
            with self.session_factory() as session:
                # Row lock (PostgreSQL): a pass and a send refreshing at once would spend a rotating token twice.
                row = session.scalar(select(MailboxLink).where(MailboxLink.id == link.id).with_for_update())
                if row is None or row.state == LinkState.UNLINKED or not row.oauth_refresh_token_encrypted:
                    raise MailboxError("oauth_reauth", "連携が解除されたか、トークンがありません。")
                refreshed_elsewhere = (row.oauth_access_token_encrypted != link.oauth_access_token_encrypted
                                       and row.oauth_expires_at is not None
                                       and row.oauth_expires_at - self.clock() > REFRESH_MARGIN)
                if not refreshed_elsewhere:
                    try:
                        tokens = provider_client(row.preset, self.box, self.config).refresh(
                            self._decrypt(row, "oauth_refresh_token"))
                    except OAuthError as error:
                        failure = _as_mailbox_error(error)
                        if failure.code == "oauth_reauth":
                            # A dead grant is 要再認証 whoever hit it (a pass or a send), so the screen asks
                            # the member to sign in again instead of retrying a token that cannot work.
                            row.state, row.next_attempt_at = LinkState.REAUTH, None
                            row.last_error, row.last_error_at = failure.message, self.clock()
                            session.commit()
                        raise failure from None
                    store_tokens(row, tokens, self.box)
                    session.commit()  # the rotated refresh token is safe before the access token is used
                values = (row.oauth_access_token_encrypted, row.oauth_refresh_token_encrypted, row.oauth_expires_at)
        # Hand the stored values to the caller's copy without making its session dirty.
        for name, value in zip(("oauth_access_token_encrypted", "oauth_refresh_token_encrypted",
                                "oauth_expires_at"), values):
            set_committed_value(link, name, value)
        return self._decrypt(link, "oauth_access_token")

    def _decrypt(self, link: MailboxLink, column: str) -> str:
        """One token in clear; unreadable means a new sign-in."""
        try:
            return self.box.decrypt(getattr(link, column + "_encrypted"), token_context(link.id, column))
        except SecretBoxError as error:
            raise MailboxError("oauth_reauth", UNREADABLE_TOKEN) from error

    def settings(self, link: MailboxLink, protocol: str, refresh: bool = False) -> ServerSettings:
        """IMAP or SMTP settings logging in by XOAUTH2 as the linked address."""
        token = self.access_token(link, refresh)
        if protocol == "imap":
            return ServerSettings(link.imap_host, link.imap_port, link.imap_security, link.imap_username, token,
                                  xoauth2=True)
        return ServerSettings(link.smtp_host, link.smtp_port, link.smtp_security, link.smtp_username, token,
                              xoauth2=True)


# ---- revocation on unlink -------------------------------------------------------------------------------------


def queue_revocation(session: Session, link: MailboxLink) -> None:
    """Remember the link's refresh token for revocation once the unlink is committed (nothing if rolled back)."""
    if link.oauth_refresh_token_encrypted and link.preset_id is not None:
        session.info.setdefault(REVOCATIONS_KEY, []).append(
            (link.id, link.preset_id, link.oauth_refresh_token_encrypted))


@event.listens_for(Session, "after_commit")
def _revoke_after_commit(session: Session) -> None:
    """After a commit that unlinked OAuth2 links, revoke their refresh tokens at the provider (in the background)."""
    pending = session.info.pop(REVOCATIONS_KEY, None)
    if pending and has_app_context():
        app = current_app._get_current_object()
        # Not a daemon: a CLI command that disabled an account must not exit before the grants are revoked.
        threading.Thread(target=_revoke_all, args=(app, pending), name="oauth-revoke", daemon=False).start()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    """An unlink that did not happen revokes nothing."""
    session.info.pop(REVOCATIONS_KEY, None)


def _revoke_all(app, pending: list) -> None:
    """Revoke each queued token; failures are logged without the token (the link is unlinked either way)."""
    with app.app_context():
        box = SecretBox(app.config["MAILBOX_ENCRYPTION_KEY"], app.config.get("MAILBOX_ENCRYPTION_OLD_KEYS") or ())
        for link_id, preset_id, encrypted in pending:
            try:
                with Session(db.engine) as session:
                    preset = session.get(MailboxPreset, preset_id)
                    if preset is None:
                        continue
                    token = box.decrypt(encrypted, token_context(link_id, "oauth_refresh_token"))
                    provider_client(preset, box, app.config).revoke(token)
            except (OAuthError, SecretBoxError) as error:
                log.warning("could not revoke the refresh token of mailbox link %s: %s", link_id,
                            getattr(error, "code", type(error).__name__))


# ---- linking and re-consent -----------------------------------------------------------------------------------


class AlreadyLinked(Exception):
    """The member already has a live link."""


class WrongAccount(Exception):
    """The member signed in at the provider as someone other than the linked mailbox."""


class PresetGone(Exception):
    """The preset was deleted while the link was being made (between the sign-in and storing the link)."""


def oauth_server_settings(preset: MailboxPreset, email: str, access_token: str) -> tuple[ServerSettings,
                                                                                         ServerSettings]:
    """IMAP and SMTP settings of the preset, logging in by XOAUTH2 as the signed-in address."""
    return (ServerSettings(preset.imap_host, preset.imap_port, preset.imap_security, email, access_token,
                           xoauth2=True),
            ServerSettings(preset.smtp_host, preset.smtp_port, preset.smtp_security, email, access_token,
                           xoauth2=True))


def link_oauth_mailbox(session: Session, membership, preset: MailboxPreset, identity: Identity,
                       tokens: TokenSet, policy: ConnectionPolicy, box: SecretBox, now: datetime,
                       verifier: Verifier = verify_mailbox) -> MailboxLink:
    """Verify the mailbox with the new token exactly as a password link is, then store the link and its tokens."""
    if not is_enabled(session, membership.account_id, EMAIL_FEATURE):
        raise FeatureOff()
    if session.scalar(select(MailboxLink).where(MailboxLink.membership_id == membership.id,
                                                MailboxLink.state != LinkState.UNLINKED)) is not None:
        raise AlreadyLinked()
    imap, smtp = oauth_server_settings(preset, identity.email, tokens.access_token)
    snapshots = verifier(imap, smtp, policy)  # raises MailboxError; nothing saved yet
    # The check takes seconds: the preset may have been deleted meanwhile. Re-read it under a row lock, so a
    # deletion either finished before (PresetGone) or waits for this commit and then sees the link (PresetInUse).
    if session.scalar(select(MailboxPreset.id).where(MailboxPreset.id == preset.id).with_for_update()) is None:
        raise PresetGone()
    link = MailboxLink(
        account_id=membership.account_id, membership_id=membership.id, email=identity.email,
        imap_host=imap.host, imap_port=imap.port, imap_security=imap.security, imap_username=imap.username,
        smtp_host=smtp.host, smtp_port=smtp.port, smtp_security=smtp.security, smtp_username=smtp.username,
        auth_method=AuthMethod.OAUTH2, preset_id=preset.id, oauth_subject=identity.subject[:255],
        state=LinkState.ACTIVE, linked_at=now)
    session.add(link)
    session.flush()  # the row id is part of the encryption context
    store_tokens(link, tokens, box)
    for snapshot in snapshots:
        session.add(MailboxFolder(link_id=link.id, role=snapshot.role, name=snapshot.name,
                                  uidvalidity=snapshot.uidvalidity, boundary_uidnext=snapshot.uidnext,
                                  last_uid=snapshot.uidnext - 1))
    audit.record(session, membership.account_id, membership.user_id, "mailbox.link", "mailbox_link", link.id,
                 email=link.email, imap_host=link.imap_host, preset_id=preset.id, auth_method="oauth2")
    try:
        session.commit()
    except IntegrityError as error:  # a deletion that slipped past the lock (SQLite has no row locks): the FK
        session.rollback()
        raise PresetGone() from error
    return link


def reauthorize_oauth_link(session: Session, link: MailboxLink, identity: Identity, tokens: TokenSet,
                           policy: ConnectionPolicy, box: SecretBox, now: datetime,
                           verifier: Verifier = verify_mailbox) -> None:
    """After 「再度サインインして連携」: same mailbox, verified with the new token, then resume from the checkpoint."""
    if identity.email != link.email or (link.oauth_subject and identity.subject[:255] != link.oauth_subject):
        raise WrongAccount()
    imap = ServerSettings(link.imap_host, link.imap_port, link.imap_security, link.imap_username,
                          tokens.access_token, xoauth2=True)
    smtp = ServerSettings(link.smtp_host, link.smtp_port, link.smtp_security, link.smtp_username,
                          tokens.access_token, xoauth2=True)
    verifier(imap, smtp, policy)  # the folders and their checkpoints stay as they are
    store_tokens(link, tokens, box)
    link.state, link.failure_count, link.next_attempt_at = LinkState.ACTIVE, 0, None
    link.last_error, link.last_error_at = None, None
    audit.record(session, link.account_id, link.membership.user_id, "mailbox.reauth", "mailbox_link", link.id,
                 at=now.isoformat(), auth_method="oauth2")
    session.commit()
