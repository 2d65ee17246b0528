"""Mail template use cases: list, create, edit and delete, and who may change which template."""
from dataclasses import dataclass

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from portal import audit
from portal.models import MailDraft, MailTemplate, Membership, Sequence, SequenceStep
from portal.policy import Action, PermissionDenied, can, ensure
from portal.scoping import for_account


class TemplateInUse(Exception):
    """A sales automation step sends this template, so it cannot be deleted."""

    def __init__(self, sequence_names: list[str]):
        """Keep the names of the automations that use the template, for the message."""
        super().__init__(sequence_names)
        self.sequence_names = sequence_names


@dataclass(frozen=True)
class TemplateData:
    """The editable fields of a template; shared means 共有テンプレート (no owner)."""

    name: str
    subject: str
    body: str
    shared: bool = False


def template_list(account_id: int) -> Select:
    """All templates of the account by name, owners loaded for the 個人 badge (for pagination)."""
    return (for_account(select(MailTemplate), account_id)
            .options(selectinload(MailTemplate.owner_membership).selectinload(Membership.user))
            .order_by(MailTemplate.name, MailTemplate.id))


def templates_for(session: Session, account_id: int) -> list[MailTemplate]:
    """Every template of the account, ordered by name, for pickers (any member may use any template)."""
    return list(session.scalars(template_list(account_id)))


def may_edit(actor: Membership, template: MailTemplate) -> bool:
    """Managers and above edit any template of their account; others only their own personal ones."""
    if template.account_id != actor.account_id:
        return False
    if can(actor.role, Action.EDIT_SHARED_TEMPLATES):
        return True
    return can(actor.role, Action.USE_TEMPLATES) and template.owner_membership_id == actor.id


def _ensure_may_edit(actor: Membership, template: MailTemplate) -> None:
    """Raise PermissionDenied unless the actor may change the template."""
    if not may_edit(actor, template):
        raise PermissionDenied(Action.EDIT_SHARED_TEMPLATES)


def sequences_using(session: Session, template: MailTemplate) -> list[str]:
    """Names of the sales automations with a step that sends the template."""
    return list(session.scalars(
        select(Sequence.name).join(SequenceStep, SequenceStep.sequence_id == Sequence.id)
        .where(SequenceStep.template_id == template.id).distinct().order_by(Sequence.name)))


def create_template(session: Session, actor: Membership, data: TemplateData) -> MailTemplate:
    """Add a template: shared for managers and above when asked, otherwise the actor's own."""
    ensure(actor.role, Action.USE_TEMPLATES)
    if data.shared:
        ensure(actor.role, Action.EDIT_SHARED_TEMPLATES)
    template = MailTemplate(account_id=actor.account_id, owner_membership_id=None if data.shared else actor.id,
                            name=data.name, subject=data.subject, body=data.body)
    session.add(template)
    session.flush()
    audit.record(session, actor.account_id, actor.user_id, "template.create", "template", template.id,
                 name=data.name, shared=data.shared)
    session.commit()
    return template


def update_template(session: Session, actor: Membership, template: MailTemplate, data: TemplateData) -> None:
    """Change a template; making a shared one personal gives it to the actor, a personal one keeps its owner."""
    _ensure_may_edit(actor, template)
    if data.shared != (template.owner_membership_id is None):
        ensure(actor.role, Action.EDIT_SHARED_TEMPLATES)
        template.owner_membership_id = None if data.shared else actor.id
    template.name, template.subject, template.body = data.name, data.subject, data.body
    audit.record(session, template.account_id, actor.user_id, "template.update", "template", template.id,
                 name=data.name, shared=data.shared)
    session.commit()


def delete_template(session: Session, actor: Membership, template: MailTemplate) -> None:
    """Delete a template unless a sales automation sends it; unsent reply drafts just forget it."""
    _ensure_may_edit(actor, template)
    in_use = sequences_using(session, template)
    if in_use:
        raise TemplateInUse(in_use)
    # SQLite does not enforce the drafts' ON DELETE SET NULL, so clear the reference here on every database.
    session.execute(update(MailDraft).where(MailDraft.template_id == template.id).values(template_id=None))
    audit.record(session, template.account_id, actor.user_id, "template.delete", "template", template.id,
                 name=template.name)
    session.delete(template)
    try:
        session.commit()
    except IntegrityError:
        # A step that started using the template after the check above; PostgreSQL's foreign key refuses.
        session.rollback()
        raise TemplateInUse(sequences_using(session, template)) from None
