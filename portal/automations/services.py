"""Sales automation use cases: sequences and their steps, enrolling and stopping customers, stop on reply."""
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from portal import audit
from portal.customers.services import may_open
from portal.models import (Customer, Direction, Enrollment, EnrollmentState, MailMessage, MailTemplate, Membership,
                           Sequence, SequenceStep, StopReason)
from portal.policy import Action, PermissionDenied, can, ensure
from portal.scoping import for_account

MAX_STEPS = 10
MAX_WAIT_DAYS = 365

STATE_LABELS = {EnrollmentState.ACTIVE: "実行中", EnrollmentState.COMPLETED: "完了",
                EnrollmentState.STOPPED: "停止"}
STOP_REASON_LABELS = {StopReason.CUSTOMER_REPLIED: "お客様からメールを受信", StopReason.BY_MEMBER: "手動で停止",
                      StopReason.CUSTOMER_DELETED: "顧客が削除された"}

# Out-of-office replies that carry no Auto-Submitted header still announce themselves at the start of the
# subject, often inside brackets (【自動返信】, [Automatic reply]).
_AUTOMATIC_SUBJECT = re.compile(r"^[\s\[【(（<「]*(自動応答|不在|out of office|automatic reply|自動返信)",
                                re.IGNORECASE)


class UnknownTemplate(Exception):
    """A step names a template that is not one of the account's templates."""


class NoSteps(Exception):
    """A sequence needs at least one step."""


class SequenceInUse(Exception):
    """Customers are still running the sequence, so it cannot be deleted."""

    def __init__(self, active: int):
        """Keep how many enrolments are still running, for the message."""
        super().__init__(active)
        self.active = active


class AlreadyEnrolled(Exception):
    """The customer is already running this sequence."""


class NotActive(Exception):
    """The enrolment has already completed or stopped."""


class EnrollForOthersDenied(Exception):
    """A plain user tried to enrol a customer whose 担当者 is not themselves (that mailbox would send)."""

    def __init__(self, assignee: Membership | None):
        """Keep the 担当者 (or None), for the message."""
        super().__init__(assignee)
        self.assignee = assignee


@dataclass(frozen=True)
class StepData:
    """One step: wait this many days, then send this template."""

    wait_days: int
    template_id: int


@dataclass(frozen=True)
class SequenceData:
    """The editable fields of a sequence, steps in sending order."""

    name: str
    stop_on_reply: bool
    steps: list[StepData]


def sequence_list(account_id: int) -> Select:
    """The account's sequences by name (for pagination)."""
    return for_account(select(Sequence), account_id).order_by(Sequence.name, Sequence.id)


def sequences_of(session: Session, account_id: int) -> list[Sequence]:
    """Every sequence of the account by name, for the enrol picker."""
    return list(session.scalars(sequence_list(account_id)))


def sequence_counts(session: Session, account_id: int, sequence_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(step count, running enrolment count) per sequence of the account, in two grouped queries.

    Another account's id counts nothing (0, 0): the ids are scoped here, not trusted.
    """
    if not sequence_ids:
        return {}
    steps = dict(session.execute(
        for_account(select(SequenceStep.sequence_id, func.count(SequenceStep.id))
                    .join(Sequence, Sequence.id == SequenceStep.sequence_id), account_id, Sequence)
        .where(SequenceStep.sequence_id.in_(sequence_ids)).group_by(SequenceStep.sequence_id)).all())
    active = dict(session.execute(for_account(select(Enrollment.sequence_id, func.count(Enrollment.id)), account_id)
                                  .where(Enrollment.sequence_id.in_(sequence_ids),
                                         Enrollment.state == EnrollmentState.ACTIVE)
                                  .group_by(Enrollment.sequence_id)).all())
    return {sequence_id: (steps.get(sequence_id, 0), active.get(sequence_id, 0)) for sequence_id in sequence_ids}


def enrollment_counts(session: Session, sequence: Sequence) -> tuple[int, int]:
    """(running, finished) enrolments of the sequence."""
    rows = dict(session.execute(for_account(select(Enrollment.state, func.count(Enrollment.id)), sequence.account_id)
                                .where(Enrollment.sequence_id == sequence.id).group_by(Enrollment.state)).all())
    active = rows.get(EnrollmentState.ACTIVE, 0)
    return active, sum(rows.values()) - active


def sequence_enrollments(sequence: Sequence) -> Select:
    """The sequence's enrolments, running first, then newest first (for pagination)."""
    running_first = (Enrollment.state != EnrollmentState.ACTIVE)
    return (for_account(select(Enrollment), sequence.account_id).where(Enrollment.sequence_id == sequence.id)
            .options(selectinload(Enrollment.customer))
            .order_by(running_first, Enrollment.started_at.desc(), Enrollment.id.desc()))


def customer_enrollments(session: Session, account_id: int, customer_id: int) -> list[Enrollment]:
    """Every enrolment of one customer of the account, newest first, for the customer's page."""
    return list(session.scalars(for_account(select(Enrollment), account_id)
                                .where(Enrollment.customer_id == customer_id)
                                .options(selectinload(Enrollment.sequence).selectinload(Sequence.steps))
                                .order_by(Enrollment.started_at.desc(), Enrollment.id.desc())))


def _check_templates(session: Session, account_id: int, steps: list[StepData]) -> None:
    """Refuse steps without a template of the account, and a sequence without steps."""
    if not steps:
        raise NoSteps()
    if len(steps) > MAX_STEPS or any(not 0 <= step.wait_days <= MAX_WAIT_DAYS for step in steps):
        raise ValueError("steps out of range")
    wanted = {step.template_id for step in steps}
    known = set(session.scalars(for_account(select(MailTemplate.id), account_id).where(MailTemplate.id.in_(wanted))))
    if wanted - known:
        raise UnknownTemplate()


def _apply(sequence: Sequence, data: SequenceData) -> None:
    """Copy the fields and steps onto the sequence, updating existing steps in place."""
    sequence.name, sequence.stop_on_reply = data.name.strip(), data.stop_on_reply
    for position, step_data in enumerate(data.steps):
        if position < len(sequence.steps):
            step = sequence.steps[position]
        else:
            step = SequenceStep(position=position)
            sequence.steps.append(step)
        step.position, step.wait_days, step.template_id = position, step_data.wait_days, step_data.template_id
    del sequence.steps[len(data.steps):]


def _audit_fields(data: SequenceData) -> dict:
    """The sequence's fields as plain JSON values."""
    return {"name": data.name, "stop_on_reply": data.stop_on_reply,
            "steps": [[step.wait_days, step.template_id] for step in data.steps]}


def _ensure_own(actor: Membership, sequence: Sequence) -> None:
    """Refuse another account's sequence: the caller's lookup is not trusted to have scoped it."""
    if sequence.account_id != actor.account_id:
        raise PermissionDenied(Action.EDIT_SEQUENCES)


def create_sequence(session: Session, actor: Membership, data: SequenceData) -> Sequence:
    """Add a sequence with its steps to the actor's account."""
    ensure(actor.role, Action.EDIT_SEQUENCES)
    _check_templates(session, actor.account_id, data.steps)
    sequence = Sequence(account_id=actor.account_id)
    _apply(sequence, data)
    session.add(sequence)
    session.flush()
    audit.record(session, actor.account_id, actor.user_id, "sequence.create", "sequence", sequence.id,
                 **_audit_fields(data))
    session.commit()
    return sequence


def update_sequence(session: Session, actor: Membership, sequence: Sequence, data: SequenceData) -> None:
    """Change a sequence; running enrolments continue from their next position in the new steps."""
    ensure(actor.role, Action.EDIT_SEQUENCES)
    _ensure_own(actor, sequence)
    _check_templates(session, actor.account_id, data.steps)
    _apply(sequence, data)
    audit.record(session, sequence.account_id, actor.user_id, "sequence.update", "sequence", sequence.id,
                 **_audit_fields(data))
    session.commit()


def delete_sequence(session: Session, actor: Membership, sequence: Sequence) -> None:
    """Delete a sequence and its finished enrolments; refused while customers are still running it."""
    ensure(actor.role, Action.EDIT_SEQUENCES)
    _ensure_own(actor, sequence)
    active, finished = enrollment_counts(session, sequence)
    if active:
        raise SequenceInUse(active)
    # Finished enrolments point at the sequence (no soft delete): they go with it, the audit entry remains.
    for enrollment in session.scalars(for_account(select(Enrollment), sequence.account_id)
                                      .where(Enrollment.sequence_id == sequence.id)):
        session.delete(enrollment)
    audit.record(session, sequence.account_id, actor.user_id, "sequence.delete", "sequence", sequence.id,
                 name=sequence.name, finished_enrollments=finished)
    session.delete(sequence)
    session.commit()


def may_enroll(actor: Membership, customer: Customer) -> bool:
    """True when the actor may enrol this customer: their own customer, or any customer for managers and above."""
    return can(actor.role, Action.ENROLL_FOR_OTHERS) or customer.assigned_membership_id == actor.id


def may_send_from(enrollment: Enrollment, sender: Membership) -> bool:
    """True when the 担当者 who would send enrolled the customer themselves, or a manager and above did."""
    # Checked again at send time: the 担当者 may have changed, or the enroller lost the role, since enrolment.
    enroller = enrollment.enrolled_by
    if enroller is None or enroller.account_id != sender.account_id:
        return False
    return enroller.id == sender.id or can(enroller.role, Action.ENROLL_FOR_OTHERS)


def enroll_customer(session: Session, actor: Membership, sequence: Sequence, customer: Customer,
                    now: datetime) -> Enrollment:
    """Start the sequence for a live customer the actor may open; the first step is due after its wait."""
    ensure(actor.role, Action.ENROLL_CUSTOMERS)
    if customer.account_id != sequence.account_id or customer.deleted_at is not None \
            or sequence.account_id != actor.account_id or not may_open(actor, customer):
        raise PermissionDenied(Action.ENROLL_CUSTOMERS)
    if not may_enroll(actor, customer):
        raise EnrollForOthersDenied(customer.assigned_membership)
    running = select(Enrollment.id).where(Enrollment.sequence_id == sequence.id,
                                          Enrollment.customer_id == customer.id,
                                          Enrollment.state == EnrollmentState.ACTIVE)
    if session.scalar(running) is not None:
        raise AlreadyEnrolled()
    first_wait = sequence.steps[0].wait_days if sequence.steps else 0
    enrollment = Enrollment(account_id=sequence.account_id, sequence_id=sequence.id, customer_id=customer.id,
                            enrolled_by_membership_id=actor.id, state=EnrollmentState.ACTIVE, next_position=0,
                            started_at=now, next_due_at=now + timedelta(days=first_wait))
    session.add(enrollment)
    try:
        session.flush()
    except IntegrityError as error:
        # Two members enrolling the same customer at once: the partial unique index lets one through.
        session.rollback()
        raise AlreadyEnrolled() from error
    audit.record(session, sequence.account_id, actor.user_id, "enrollment.create", "enrollment", enrollment.id,
                 sequence=sequence.name, customer_id=customer.id)
    session.commit()
    return enrollment


def _finish(enrollment: Enrollment, state: EnrollmentState, now: datetime, reason: StopReason | None = None) -> None:
    """End an enrolment: completed or stopped (with why), nothing more is due."""
    enrollment.state, enrollment.stop_reason = state, reason
    enrollment.finished_at, enrollment.next_due_at = now, None


def stop_enrollment(session: Session, actor: Membership, enrollment: Enrollment, now: datetime) -> None:
    """A member stops a running enrolment (手動で停止); the customer must be one they may open."""
    ensure(actor.role, Action.ENROLL_CUSTOMERS)
    if enrollment.account_id != actor.account_id or not may_open(actor, enrollment.customer):
        raise PermissionDenied(Action.ENROLL_CUSTOMERS)
    if enrollment.state != EnrollmentState.ACTIVE:
        raise NotActive()
    _finish(enrollment, EnrollmentState.STOPPED, now, StopReason.BY_MEMBER)
    audit.record(session, enrollment.account_id, actor.user_id, "enrollment.stop", "enrollment", enrollment.id,
                 sequence=enrollment.sequence.name, customer_id=enrollment.customer_id)
    session.commit()


def complete(enrollment: Enrollment, now: datetime) -> None:
    """Mark an enrolment 完了 after its last step (no commit)."""
    _finish(enrollment, EnrollmentState.COMPLETED, now)


def stop_for_deleted_customers(session: Session, now: datetime) -> int:
    """Stop running enrolments whose customer was deleted (顧客が削除された); no commit."""
    enrollments = list(session.scalars(
        select(Enrollment).join(Customer, Customer.id == Enrollment.customer_id)
        .where(Enrollment.state == EnrollmentState.ACTIVE, Customer.deleted_at.is_not(None))))
    for enrollment in enrollments:
        _finish(enrollment, EnrollmentState.STOPPED, now, StopReason.CUSTOMER_DELETED)
    return len(enrollments)


def is_automatic_reply(message: MailMessage) -> bool:
    """Auto-Submitted and friends (set by the parser), or an out-of-office subject."""
    return bool(message.auto_submitted) or bool(_AUTOMATIC_SUBJECT.match(message.subject or ""))


def _whole_seconds(moment: datetime) -> datetime:
    """The moment without its fraction: servers keep arrival times to the second."""
    return moment.replace(microsecond=0)


def stop_on_customer_reply(session: Session, messages: list[MailMessage], now: datetime) -> list[Enrollment]:
    """Stop running enrolments (自動停止 on) whose customer wrote one of these newly imported messages; no commit."""
    # Only received mail sent from the customer's own address counts (a customer merely in To of someone else's
    # mail does not), never an automatic reply, and never mail that arrived before the enrolment started. The
    # messages may be the importer's unflushed batch, so customers are read from the in-memory links.
    replies = [message for message in messages
               if message.direction == Direction.RECEIVED and message.customer_links
               and not is_automatic_reply(message)]
    customer_ids = {link.customer_id for message in replies for link in message.customer_links}
    if not customer_ids:
        return []
    rows = session.execute(
        select(Enrollment, Customer.email).join(Sequence, Sequence.id == Enrollment.sequence_id)
        .join(Customer, Customer.id == Enrollment.customer_id)
        .where(Enrollment.customer_id.in_(customer_ids), Enrollment.state == EnrollmentState.ACTIVE,
               Sequence.stop_on_reply.is_(True))).all()
    stopped = []
    for enrollment, email in rows:
        sender = (email or "").lower()
        matching = [message for message in replies
                    if message.account_id == enrollment.account_id
                    and (message.from_address or "").lower() == sender
                    and any(link.customer_id == enrollment.customer_id for link in message.customer_links)
                    and message.received_at >= _whole_seconds(enrollment.started_at)]
        if not matching:
            continue
        first = min(matching, key=lambda message: message.received_at)
        if first.id is None:
            session.flush()  # the importer's batch is not flushed yet; the stop remembers which mail it was
        _finish(enrollment, EnrollmentState.STOPPED, now, StopReason.CUSTOMER_REPLIED)
        enrollment.stop_message_id = first.id
        stopped.append(enrollment)
    return stopped
