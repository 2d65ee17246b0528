"""Preset use cases: add, edit and delete recommended mailbox server settings."""
from dataclasses import asdict, dataclass

from sqlalchemy.orm import Session

from portal import audit
from portal.models import MailboxPreset, Membership, Security


@dataclass(frozen=True)
class PresetData:
    """The fields of a preset."""

    name: str
    imap_host: str
    imap_port: int
    imap_security: Security
    smtp_host: str
    smtp_port: int
    smtp_security: Security


def _audit_fields(data: PresetData) -> dict:
    """The preset's fields as plain JSON values."""
    return {key: value.value if isinstance(value, Security) else value for key, value in asdict(data).items()}


def create_preset(session: Session, actor: Membership, data: PresetData) -> MailboxPreset:
    """Add a preset to the actor's account."""
    preset = MailboxPreset(account_id=actor.account_id, **asdict(data))
    session.add(preset)
    session.flush()
    audit.record(session, actor.account_id, actor.user_id, "mailbox_preset.create", "mailbox_preset", preset.id,
                 **_audit_fields(data))
    session.commit()
    return preset


def update_preset(session: Session, actor: Membership, preset: MailboxPreset, data: PresetData) -> None:
    """Change a preset; links made with it keep their own copy of the settings."""
    for key, value in asdict(data).items():
        setattr(preset, key, value)
    audit.record(session, preset.account_id, actor.user_id, "mailbox_preset.update", "mailbox_preset", preset.id,
                 **_audit_fields(data))
    session.commit()


def delete_preset(session: Session, actor: Membership, preset: MailboxPreset) -> None:
    """Delete a preset; no link or mail depends on it."""
    audit.record(session, preset.account_id, actor.user_id, "mailbox_preset.delete", "mailbox_preset", preset.id,
                 name=preset.name)
    session.delete(preset)
    session.commit()
