"""Preset use cases: add, edit and delete recommended mailbox server settings (password or OAuth2)."""
from dataclasses import dataclass, field, fields

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import audit
from portal.mailbox.oauth import preset_secret_context
from portal.models import AuthMethod, LinkState, MailboxLink, MailboxPreset, Membership, OAuthProvider, Security
from portal.policy import Action, PermissionDenied, ensure
from portal.scoping import for_account
from portal.secretbox import SecretBox

OAUTH_COLUMNS = ("oauth_provider", "oauth_discovery_url", "oauth_scopes", "oauth_tenant", "oauth_client_id")


@dataclass(frozen=True)
class PresetData:
    """The fields of a preset. `oauth_client_secret` None keeps the stored secret; "" clears it."""

    name: str
    imap_host: str
    imap_port: int
    imap_security: Security
    smtp_host: str
    smtp_port: int
    smtp_security: Security
    auth_method: AuthMethod = AuthMethod.PASSWORD
    oauth_provider: OAuthProvider | None = None
    oauth_discovery_url: str | None = None
    oauth_scopes: str | None = None
    oauth_tenant: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    smtp_auth: bool = True  # False: SMTP認証なし (password presets only)

    def columns(self) -> dict:
        """The column values to store: OAuth fields only where the method and provider use them."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "oauth_client_secret"}
        if self.auth_method != AuthMethod.OAUTH2:
            return values | dict.fromkeys(OAUTH_COLUMNS)
        provider = self.oauth_provider
        values["oauth_client_id"] = self.oauth_client_id or None
        # Empty tenant: the operator's OAUTH_MICROSOFT_TENANT, else organizations (decided when signing in).
        values["oauth_tenant"] = (self.oauth_tenant or None) if provider == OAuthProvider.MICROSOFT else None
        if provider != OAuthProvider.OIDC:
            values["oauth_discovery_url"] = values["oauth_scopes"] = None
        else:
            values["oauth_scopes"] = " ".join(dict.fromkeys((self.oauth_scopes or "").split())) or None
        return values


class PresetInUse(Exception):
    """OAuth2 links still sign in through this preset's client app."""

    def __init__(self, link_count: int):
        super().__init__(link_count)
        self.link_count = link_count


class MissingSecretBox(Exception):
    """A client secret was given but no secret box to encrypt it with (a programming error)."""


def links_using(session: Session, preset: MailboxPreset) -> int:
    """How many links that are not unlinked depend on the preset's client app (連携中, エラー or 要再認証)."""
    return session.scalar(for_account(select(func.count()).select_from(MailboxLink), preset.account_id, MailboxLink)
                          .where(MailboxLink.preset_id == preset.id, MailboxLink.state != LinkState.UNLINKED)) or 0


def _audit_fields(data: PresetData, secret_changed: bool) -> dict:
    """The stored fields as plain JSON values; the secret only as whether it changed, never its value."""
    details = {key: value.value if isinstance(value, (Security, AuthMethod, OAuthProvider)) else value
               for key, value in data.columns().items()}
    if data.auth_method == AuthMethod.OAUTH2:
        details["oauth_client_secret_changed"] = secret_changed
    return details


def _store_secret(preset: MailboxPreset, data: PresetData, box: SecretBox | None) -> bool:
    """Encrypt a new client secret bound to the preset's row, or clear it; True when it changed."""
    if data.auth_method != AuthMethod.OAUTH2 or not data.oauth_client_id:
        # No own client app (password, or the operator's OAUTH_* app): no secret of our own either.
        changed = bool(preset.oauth_client_secret_encrypted)
        preset.oauth_client_secret_encrypted = ""
        return changed
    if data.oauth_client_secret is None:
        return False
    if not data.oauth_client_secret:
        changed = bool(preset.oauth_client_secret_encrypted)
        preset.oauth_client_secret_encrypted = ""
        return changed
    if box is None:
        raise MissingSecretBox()
    preset.oauth_client_secret_encrypted = box.encrypt(data.oauth_client_secret, preset_secret_context(preset.id))
    return True


def create_preset(session: Session, actor: Membership, data: PresetData, box: SecretBox | None = None
                  ) -> MailboxPreset:
    """Add a preset to the actor's account (the client secret encrypted with `box`)."""
    ensure(actor.role, Action.EDIT_MAILBOX_PRESETS)
    preset = MailboxPreset(account_id=actor.account_id, **data.columns())
    session.add(preset)
    session.flush()  # the row id is part of the secret's encryption context
    secret_changed = _store_secret(preset, data, box)
    audit.record(session, actor.account_id, actor.user_id, "mailbox_preset.create", "mailbox_preset", preset.id,
                 **_audit_fields(data, secret_changed))
    session.commit()
    return preset


def update_preset(session: Session, actor: Membership, preset: MailboxPreset, data: PresetData,
                  box: SecretBox | None = None) -> None:
    """Change a preset. Links keep their own copy of the server settings; OAuth2 links keep using the
    preset's client app, so its method and provider stay fixed while such links exist (PresetInUse)."""
    ensure(actor.role, Action.EDIT_MAILBOX_PRESETS)
    if preset.account_id != actor.account_id:
        raise PermissionDenied("another account's preset")
    if (data.auth_method, data.oauth_provider if data.auth_method == AuthMethod.OAUTH2 else None) != \
            (preset.auth_method, preset.oauth_provider if preset.uses_oauth else None):
        in_use = links_using(session, preset)
        if in_use:
            raise PresetInUse(in_use)
    for key, value in data.columns().items():
        setattr(preset, key, value)
    secret_changed = _store_secret(preset, data, box)
    audit.record(session, preset.account_id, actor.user_id, "mailbox_preset.update", "mailbox_preset", preset.id,
                 **_audit_fields(data, secret_changed))
    session.commit()


def delete_preset(session: Session, actor: Membership, preset: MailboxPreset) -> None:
    """Delete a preset. Password links keep their own copy of the settings; an OAuth2 link needs the preset's
    client app to refresh its tokens and to sign in again, so a preset that a live link uses is refused
    (PresetInUse). Unlinked links only remember it as history and lose the reference."""
    ensure(actor.role, Action.EDIT_MAILBOX_PRESETS)
    if preset.account_id != actor.account_id:
        raise PermissionDenied("another account's preset")
    # Lock the row first: an OAuth2 link being stored at this moment locks it too, so one of the two waits and
    # then sees the other (no foreign-key error from deleting a preset a new link points at).
    session.scalar(select(MailboxPreset.id).where(MailboxPreset.id == preset.id).with_for_update())
    in_use = links_using(session, preset)
    if in_use:
        raise PresetInUse(in_use)
    for link in session.scalars(for_account(select(MailboxLink), preset.account_id)
                                .where(MailboxLink.preset_id == preset.id)):
        link.preset_id = None
    audit.record(session, preset.account_id, actor.user_id, "mailbox_preset.delete", "mailbox_preset", preset.id,
                 name=preset.name)
    session.delete(preset)
    session.commit()


def rotate_preset_secrets(session: Session, box: SecretBox) -> int:
    """Re-encrypt every client secret made with an old key under the current key (operator command, no actor);
    returns how many presets."""
    rotated = 0
    for preset in session.scalars(select(MailboxPreset).where(MailboxPreset.oauth_client_secret_encrypted != "")):
        if box.needs_rotation(preset.oauth_client_secret_encrypted):
            context = preset_secret_context(preset.id)
            secret = box.decrypt(preset.oauth_client_secret_encrypted, context)
            preset.oauth_client_secret_encrypted = box.encrypt(secret, context)
            rotated += 1
    session.commit()
    return rotated
