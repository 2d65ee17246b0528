"""Sending due automation steps: pick what is due, send it from the assigned member's mailbox, move on."""
import hashlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from portal.automations.services import complete, may_send_from, stop_for_deleted_customers
from portal.mails.sending import AlreadySent, InvalidHeader, NoMailbox, Outgoing, SendEnvironment, SendFailed, send_mail
from portal.mailtemplates.placeholders import PlaceholderValues, fill_placeholders, fill_subject
from portal.models import (EMAIL_FEATURE, Account, AccountStatus, Enrollment, EnrollmentState, FeatureContract,
                           MailMessage, Membership, MembershipState)

logger = logging.getLogger(__name__)

RETRY_AFTER = timedelta(hours=1)
RETRY_NOTE = "1時間後に自動的に再送信します。"


class _CannotSend(Exception):
    """This step cannot go out now; the message says why in the member's words."""

    def __init__(self, message: str):
        """Keep the Japanese explanation."""
        super().__init__(message)
        self.message = message


# Steps one run sends at most (the rest wait for the next run), and how many a runner claims at a time.
RUN_LIMIT = 200
CLAIM_BATCH = 10


def _due_enrollments(now: datetime):
    """The query of running enrolments whose next step is due, in active accounts with メール on, oldest due first."""
    return (select(Enrollment.id).join(Account, Account.id == Enrollment.account_id)
            .join(FeatureContract, (FeatureContract.account_id == Account.id)
                  & (FeatureContract.feature == EMAIL_FEATURE))
            .where(Enrollment.state == EnrollmentState.ACTIVE, Enrollment.next_due_at <= now,
                   Account.status == AccountStatus.ACTIVE, FeatureContract.enabled.is_(True))
            .order_by(Enrollment.next_due_at, Enrollment.id))


def due_enrollment_ids(session: Session, now: datetime, limit: int = RUN_LIMIT) -> list[int]:
    """Running enrolments whose next step is due, in active accounts with メール on, oldest due first."""
    return list(session.scalars(_due_enrollments(now).limit(limit)))


def claim_due_steps(session: Session, now: datetime, limit: int = CLAIM_BATCH, passed: frozenset[int] = frozenset()
                    ) -> list[int]:
    """Claim up to `limit` due steps in one short transaction by pushing their due time out: no other runner sends them.

    Worker processes share the steps: on PostgreSQL `FOR UPDATE SKIP LOCKED` hands each runner rows nobody else is
    claiming, and the conditional update (still due) is the guard on SQLite too. `passed` are enrolments this run
    already handled (a step with no wait is due again at once; it goes out on the next run, as before).
    """
    candidates = list(session.scalars(_due_enrollments(now).where(Enrollment.id.not_in(passed)).limit(limit)
                                      .with_for_update(of=Enrollment, skip_locked=True)))
    claimed = []
    for enrollment_id in candidates:
        result = session.execute(update(Enrollment).where(
            Enrollment.id == enrollment_id, Enrollment.state == EnrollmentState.ACTIVE, Enrollment.next_due_at <= now)
            .values(next_due_at=now + RETRY_AFTER))
        if result.rowcount == 1:
            claimed.append(enrollment_id)
    session.commit()
    return claimed


def step_compose_id(secret_key: str, enrollment: Enrollment) -> str:
    """A fixed id for this enrolment's current step: its Message-ID, so the step can never go out twice."""
    digest = hashlib.sha256(f"{secret_key}:{enrollment.id}:{enrollment.started_at.isoformat()}".encode()).hexdigest()
    return f"automation-{enrollment.id}-{enrollment.next_position}-{digest[:16]}"


def _outgoing(session: Session, enrollment: Enrollment, secret_key: str) -> tuple[Outgoing, Membership]:
    """The step's mail with placeholders filled for the customer and the assigned member, and that member."""
    customer = enrollment.customer
    member = customer.assigned_membership
    if member is None:
        raise _CannotSend("お客様の担当者が設定されていないため、送信できませんでした。顧客情報で担当者を設定してください。")
    if member.state != MembershipState.ACTIVE:
        raise _CannotSend(f"担当者（{member.user.name}）が利用停止中のため、送信できませんでした。担当者を変更してください。")
    if not may_send_from(enrollment, member):
        # Held, not stopped: setting the 担当者 back lets it continue; otherwise a member stops it and enrols again.
        raise _CannotSend(f"担当者（{member.user.name}）本人かマネージャー以上のユーザーが登録したものではないため、"
                          f"{member.user.name}さんのメールボックスからは送信しません。停止して、担当者本人かマネージャー以上の"
                          "ユーザーが登録し直してください。")
    step = enrollment.sequence.steps[enrollment.next_position]
    values = PlaceholderValues(customer_name=customer.name, company=customer.company or "",
                               member_name=member.user.name)
    reply_to = session.get(MailMessage, enrollment.last_message_id) if enrollment.last_message_id else None
    return Outgoing(to=customer.email, subject=fill_subject(step.template.subject, values),
                    body=fill_placeholders(step.template.body, values), reply_to=reply_to,
                    template_id=step.template_id, compose_id=step_compose_id(secret_key, enrollment)), member


def _advance(enrollment: Enrollment, now: datetime) -> None:
    """Move to the next step (due after its wait) or finish as 完了 when none is left."""
    steps = enrollment.sequence.steps
    enrollment.next_position += 1
    enrollment.last_error = None
    if enrollment.next_position >= len(steps):
        complete(enrollment, now)
    else:
        enrollment.next_due_at = now + timedelta(days=steps[enrollment.next_position].wait_days)


def _send_step(session: Session, enrollment: Enrollment, now: datetime, env: SendEnvironment) -> bool:
    """Send one due step; True when a mail went out."""
    if enrollment.next_position >= len(enrollment.sequence.steps):
        complete(enrollment, now)  # the sequence was shortened below this enrolment's position
        session.commit()
        return False
    outgoing, member = _outgoing(session, enrollment, env.secret_key)
    try:
        message = send_mail(session, member, outgoing, env).message
    except AlreadySent as sent:
        message = sent.message  # sent before the advance below was saved (a crash in between): not again
    except NoMailbox as error:
        raise _CannotSend(f"担当者（{member.user.name}）のメールボックスが連携されていないか、再認証が必要なため、"
                          "送信できませんでした。") from error
    except SendFailed as error:
        raise _CannotSend(f"送信に失敗しました：{error.message}") from error
    except InvalidHeader as error:
        raise _CannotSend(f"送信できませんでした：{error.message}") from error
    # Advanced only once the mail is out; the step's fixed Message-ID makes a repeat after a crash harmless.
    _advance(enrollment, now)
    enrollment.thread_id, enrollment.last_message_id = message.thread_id, message.id
    session.commit()
    return True


def _record_error(session: Session, enrollment_id: int, message: str, now: datetime) -> None:
    """Keep the enrolment running, say why the step did not go out, and try again in an hour."""
    session.rollback()
    enrollment = session.get(Enrollment, enrollment_id)
    if enrollment is None or enrollment.state != EnrollmentState.ACTIVE:
        return
    enrollment.last_error = f"{message}{RETRY_NOTE}"
    enrollment.next_due_at = now + RETRY_AFTER
    session.commit()


def send_due_steps(session: Session, now: datetime, env: SendEnvironment) -> int:
    """Send every due step of every account (deleted customers are stopped first); returns how many went out."""
    stop_for_deleted_customers(session, now)
    session.commit()
    sent, passed = 0, set()
    while len(passed) < RUN_LIMIT:
        claimed = claim_due_steps(session, now, min(CLAIM_BATCH, RUN_LIMIT - len(passed)), frozenset(passed))
        if not claimed:
            break
        passed.update(claimed)
        for enrollment_id in claimed:
            sent += _send_claimed(session, enrollment_id, now, env)
    return sent


def _send_claimed(session: Session, enrollment_id: int, now: datetime, env: SendEnvironment) -> bool:
    """Send one claimed step; a step that cannot go out records why and waits an hour."""
    enrollment = session.get(Enrollment, enrollment_id)
    try:
        return _send_step(session, enrollment, now, env)
    except _CannotSend as error:
        _record_error(session, enrollment_id, error.message, now)
    except Exception:  # one broken enrolment must not hold up the others
        logger.exception("automation step failed for enrollment %s", enrollment_id)
        _record_error(session, enrollment_id, "送信中に予期しないエラーが発生しました。", now)
    return False
