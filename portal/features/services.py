"""Feature contracts: on/off with a billing event; turning メール off unlinks every mailbox."""
from dataclasses import dataclass
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from portal import audit
from portal.mailbox.services import unlink_account
from portal.models import (EMAIL_FEATURE, BillingEvent, FeatureContract, LinkState, MailboxLink, MailboxPreset,
                           MailMessage, Membership, MembershipState, UnlinkReason)
from portal.scoping import for_account

FEATURE_LABELS = {EMAIL_FEATURE: "メール"}
JST = ZoneInfo("Asia/Tokyo")


@dataclass(frozen=True)
class MailVolume:
    """Stored imported mail of an account, the basis of storage charges."""

    bytes: int
    messages: int


@dataclass(frozen=True)
class MailSetupProgress:
    """How far an account is with the steps after turning メール on: presets, then each member links."""

    presets: int
    linked_members: int
    active_members: int

    @property
    def done(self) -> bool:
        """Every active member has a live link."""
        return self.linked_members >= self.active_members


def mail_setup_progress(session: Session, account_id: int) -> MailSetupProgress:
    """Counts for the next-steps panel shown once メール is on."""
    presets = session.scalar(for_account(select(func.count(MailboxPreset.id)), account_id, MailboxPreset))
    active = session.scalar(for_account(select(func.count(Membership.id)), account_id, Membership)
                            .where(Membership.state == MembershipState.ACTIVE))
    linked = session.scalar(
        for_account(select(func.count(MailboxLink.id)).join(Membership, Membership.id == MailboxLink.membership_id),
                    account_id, MailboxLink)
        .where(MailboxLink.state != LinkState.UNLINKED, Membership.state == MembershipState.ACTIVE))
    return MailSetupProgress(presets=presets or 0, linked_members=linked or 0, active_members=active or 0)


def set_feature(session: Session, actor: Membership, feature: str, enabled: bool, now: datetime) -> bool:
    """Turn a feature of the actor's account on or off, recording the billing event; False when nothing changed."""
    account = actor.account
    contract = session.scalar(for_account(select(FeatureContract), account.id)
                              .where(FeatureContract.feature == feature))
    if contract is None:
        contract = FeatureContract(account_id=account.id, feature=feature, enabled=False, changed_at=now)
        session.add(contract)
    if contract.enabled == enabled:
        return False
    contract.enabled = enabled
    contract.changed_at = now
    session.add(BillingEvent(account_id=account.id, feature=feature, enabled=enabled, occurred_at=now,
                             actor_user_id=actor.user_id))
    audit.record(session, account.id, actor.user_id, "feature.on" if enabled else "feature.off", "feature",
                 None, feature=feature)
    if feature == EMAIL_FEATURE and not enabled:
        unlink_account(session, account.id, UnlinkReason.FEATURE_OFF, actor.user_id, now)
    session.commit()
    return True


def billing_history(session: Session, account_id: int) -> list[BillingEvent]:
    """The account's billing events, newest first."""
    return list(session.scalars(for_account(select(BillingEvent), account_id)
                                .order_by(BillingEvent.occurred_at.desc(), BillingEvent.id.desc())))


def stored_mail_volume(session: Session, account_id: int) -> MailVolume:
    """Bytes and count of the account's imported mail, the basis of storage charges."""
    total, count = session.execute(for_account(select(func.coalesce(func.sum(MailMessage.size_bytes), 0),
                                                      func.count(MailMessage.id)), account_id, MailMessage)).one()
    return MailVolume(bytes=int(total), messages=int(count))


@dataclass(frozen=True)
class VolumePoint:
    """The stored mail volume at the end of one month (the current month: now)."""

    month: date
    bytes: int


def _month_start(year: int, month: int) -> datetime:
    """The first instant of a month in Japan time, as UTC."""
    return datetime(year, month, 1, tzinfo=JST).astimezone(timezone.utc)


def volume_history(session: Session, account_id: int, now: datetime, months: int = 12) -> list[VolumePoint]:
    """The storage volume at the end of each of the last `months` months, oldest first, in one query.

    Built from the mail stored now by when it was imported, so mail deleted since then no longer counts in
    earlier months either: the chart shows how today's stored mail grew, which is what storage is charged on.
    """
    local = now.astimezone(JST)
    starts = []
    year, month = local.year, local.month
    for _ in range(months):
        starts.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    starts.reverse()
    ends = [_month_start(day.year + day.month // 12, day.month % 12 + 1) for day in starts[:-1]] + [now]
    columns = [func.coalesce(func.sum(case((MailMessage.imported_at < end, MailMessage.size_bytes), else_=0)), 0)
               for end in ends]
    totals = session.execute(for_account(select(*columns), account_id, MailMessage)).one()
    return [VolumePoint(month=day, bytes=int(total)) for day, total in zip(starts, totals)]
