"""Mailbox link use cases: link after a real check, unlink (by the member or automatically), key rotation."""
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, object_session

from portal import audit
from portal.auth.services import normalise_email
from portal.feature_contracts import FeatureOff, is_enabled
from portal.mailbox import oauth
from portal.mailbox.credentials import link_passwords, password_context
from portal.mailsync.connection import ConnectionPolicy, MailboxError, ServerSettings
from portal.mailsync.network import parse_networks
from portal.mailsync.verify import FolderSnapshot, verify_mailbox
from portal.models import (EMAIL_FEATURE, ImportLogEntry, LinkState, MailboxFolder, MailboxLink, MailboxPreset,
                           MailSource, Membership, MembershipState, UnlinkReason)
from portal.policy import Action, PermissionDenied
from portal.scoping import for_account
from portal.secretbox import SecretBox

Verifier = Callable[[ServerSettings, ServerSettings, ConnectionPolicy], list[FolderSnapshot]]

UNLINK_REASON_LABELS = {
    UnlinkReason.BY_MEMBER: "本人が連携を解除しました",
    UnlinkReason.MEMBER_DISABLED: "ユーザーが無効化されたため、連携を解除しました",
    UnlinkReason.MEMBER_DELETED: "ユーザーが削除されたため、連携を解除しました",
    UnlinkReason.ACCOUNT_DISABLED: "アカウントが無効化されたため、連携を解除しました",
    UnlinkReason.ACCOUNT_CANCELLED: "アカウントが解約されたため、連携を解除しました",
    UnlinkReason.FEATURE_OFF: "メール機能がオフになったため、連携を解除しました",
}
STATE_LABELS = {LinkState.ACTIVE: "連携中", LinkState.ERROR: "エラー", LinkState.REAUTH: "要再認証",
                LinkState.UNLINKED: "解除済み"}
# The overview's states: a member's link state, or "none" for a member who never linked.
NOT_LINKED = "none"
OVERVIEW_STATES = {NOT_LINKED: "未連携", LinkState.ACTIVE.value: "連携中", LinkState.ERROR.value: "エラー",
                   LinkState.REAUTH.value: "要再認証", LinkState.UNLINKED.value: "解除済み"}
STATE_BADGES = {NOT_LINKED: "secondary", LinkState.ACTIVE.value: "success", LinkState.ERROR.value: "danger",
                LinkState.REAUTH.value: "warning", LinkState.UNLINKED.value: "light"}
# A link is fresh while its last pass is at most this many intervals old (one missed pass is still normal).
FRESH_INTERVALS = 2
RECENT_DAYS = 7


OAUTH_LINK_HAS_NO_PASSWORD = ("このメールボックスはOAuth2（サインイン）で連携しているため、パスワードは使いません。"
                              "「再度サインインして連携」からサインインし直してください。")


class AlreadyLinked(Exception):
    """The member already has a live link in this account."""


@dataclass(frozen=True)
class LinkRequest:
    """What the member entered: the address and both servers' settings with credentials."""

    email: str
    imap: ServerSettings
    smtp: ServerSettings
    preset_id: int | None = None


def connection_policy(config: Mapping, interactive: bool = False) -> ConnectionPolicy:
    """The operator's connection rules from the app settings; interactive checks (a member waiting) time out sooner."""
    timeout = float(config.get("MAIL_TIMEOUT_SECONDS", 15))
    if interactive:
        timeout = min(timeout, float(config.get("MAIL_CHECK_TIMEOUT_SECONDS", 8)))
    return ConnectionPolicy(allow_plaintext=bool(config.get("MAIL_ALLOW_PLAINTEXT")),
                            ca_file=config.get("MAIL_CA_FILE"),
                            extra_ports=tuple(config.get("MAIL_EXTRA_PORTS") or ()),
                            timeout=timeout, allowed_networks=parse_networks(config.get("MAIL_ALLOWED_NETWORKS")))


def live_link(session: Session, membership_id: int) -> MailboxLink | None:
    """The member's link that is not unlinked, if any."""
    return session.scalar(select(MailboxLink).where(MailboxLink.membership_id == membership_id,
                                                    MailboxLink.state != LinkState.UNLINKED))


def link_needing_action(membership: Membership | None) -> MailboxLink | None:
    """The member's own live link when it is in エラー or 要再認証 (every page shows a banner for it)."""
    if membership is None:
        return None
    session = object_session(membership)
    return session.scalar(select(MailboxLink).where(MailboxLink.membership_id == membership.id,
                                                    MailboxLink.state.in_([LinkState.ERROR, LinkState.REAUTH])))


def account_links(session: Session, account_id: int) -> list[MailboxLink]:
    """Every live link of the account, by member."""
    return list(session.scalars(for_account(select(MailboxLink), account_id)
                                .where(MailboxLink.state != LinkState.UNLINKED).order_by(MailboxLink.membership_id)))


@dataclass(frozen=True)
class MemberLinkRow:
    """One member in the admins' overview: their live or last link and how its syncing is doing."""

    membership: Membership
    link: MailboxLink | None
    state: str                      # a key of OVERVIEW_STATES
    next_sync_at: datetime | None   # None: nothing scheduled (not linked, stopped, or waiting for re-authentication)
    imported_recently: int          # messages this link stored in the last RECENT_DAYS days
    freshness: str                  # "fresh", "stale", "never" or "" (not syncing)


@dataclass(frozen=True)
class LinkOverview:
    """Every member's link and the account's sync health at a glance."""

    rows: list[MemberLinkRow]
    counts: dict[str, int]          # members per OVERVIEW_STATES key, in that order


def next_sync_at(link: MailboxLink, interval: timedelta, now: datetime) -> datetime | None:
    """When the scheduler will next pass over the link: after its backoff (エラー) or one interval after its last pass.

    A 要再認証 or unlinked link is not synced at all. The scheduler runs every interval, so a link never synced
    (or overdue) is taken on its next run, at most one interval from now.
    """
    if link.state not in (LinkState.ACTIVE, LinkState.ERROR):
        return None
    if link.state == LinkState.ERROR and link.next_attempt_at is not None:
        return max(link.next_attempt_at, now)
    if link.last_synced_at is None:
        return now + interval
    due = link.last_synced_at + interval
    return due if due > now else now + interval


def freshness(link: MailboxLink | None, interval: timedelta, now: datetime) -> str:
    """How current the link's mail is: "fresh", "stale" (passes are late or failing), "never", "" (not syncing)."""
    if link is None or link.state not in (LinkState.ACTIVE, LinkState.ERROR):
        return ""
    if link.last_synced_at is None:
        return "never" if link.state == LinkState.ACTIVE and now - link.linked_at <= interval * FRESH_INTERVALS \
            else "stale"
    return "fresh" if now - link.last_synced_at <= interval * FRESH_INTERVALS else "stale"


def imported_counts(session: Session, link_ids: list[int], since: datetime) -> dict[int, int]:
    """How many messages each link stored since the given time."""
    if not link_ids:
        return {}
    return dict(session.execute(select(MailSource.link_id, func.count(MailSource.id))
                                .where(MailSource.link_id.in_(link_ids), MailSource.seen_at >= since)
                                .group_by(MailSource.link_id)).all())


def member_link_overview(session: Session, account_id: int, interval: timedelta, now: datetime) -> LinkOverview:
    """Every active member with their link (or 未連携), plus members no longer active whose link was stopped."""
    members = session.scalars(for_account(select(Membership), account_id).order_by(Membership.id)).all()
    links = session.scalars(for_account(select(MailboxLink), account_id).order_by(MailboxLink.id)).all()
    current: dict[int, MailboxLink] = {}
    for link in links:  # by id, so a later link replaces an earlier one; a live link is never replaced
        held = current.get(link.membership_id)
        if held is None or held.state == LinkState.UNLINKED:
            current[link.membership_id] = link
    counts = imported_counts(session, [link.id for link in current.values()], now - timedelta(days=RECENT_DAYS))
    rows = []
    for membership in members:
        link = current.get(membership.id)
        if membership.state != MembershipState.ACTIVE and link is None:
            continue
        rows.append(MemberLinkRow(membership=membership, link=link,
                                  state=link.state.value if link else NOT_LINKED,
                                  next_sync_at=next_sync_at(link, interval, now) if link else None,
                                  imported_recently=counts.get(link.id, 0) if link else 0,
                                  freshness=freshness(link, interval, now)))
    totals = {state: sum(1 for row in rows if row.state == state) for state in OVERVIEW_STATES}
    return LinkOverview(rows=rows, counts=totals)


def latest_unlinked(session: Session, membership_id: int) -> MailboxLink | None:
    """The member's most recently stopped link, to explain why it stopped."""
    return session.scalar(select(MailboxLink).where(MailboxLink.membership_id == membership_id,
                                                    MailboxLink.state == LinkState.UNLINKED)
                          .order_by(MailboxLink.unlinked_at.desc(), MailboxLink.id.desc()).limit(1))


def recent_import_log(session: Session, link_id: int, limit: int = 50) -> list[ImportLogEntry]:
    """The newest fetched-but-not-imported messages of a link, with their reasons."""
    return list(session.scalars(select(ImportLogEntry).where(ImportLogEntry.link_id == link_id)
                                .order_by(ImportLogEntry.id.desc()).limit(limit)))


def presets_of(session: Session, account_id: int) -> list[MailboxPreset]:
    """The account's recommended server settings, by name."""
    return list(session.scalars(for_account(select(MailboxPreset), account_id)
                                .order_by(MailboxPreset.name, MailboxPreset.id)))


def link_mailbox(session: Session, actor: Membership, request: LinkRequest, policy: ConnectionPolicy,
                 box: SecretBox, now: datetime, verifier: Verifier = verify_mailbox) -> MailboxLink:
    """Verify the mailbox for real, then store the link with its folder boundaries, all or nothing."""
    if not is_enabled(session, actor.account_id, EMAIL_FEATURE):
        raise FeatureOff()
    if live_link(session, actor.id) is not None:
        raise AlreadyLinked()
    snapshots = verifier(request.imap, request.smtp, policy)  # raises MailboxError; nothing saved yet
    link = MailboxLink(
        account_id=actor.account_id, membership_id=actor.id, email=normalise_email(request.email),
        imap_host=request.imap.host, imap_port=request.imap.port, imap_security=request.imap.security,
        imap_username=request.imap.username, smtp_host=request.smtp.host, smtp_port=request.smtp.port,
        smtp_security=request.smtp.security, smtp_username=request.smtp.username,
        smtp_auth=request.smtp.authenticate, state=LinkState.ACTIVE, linked_at=now)
    session.add(link)
    session.flush()  # the row id is part of the encryption context
    link.imap_password_encrypted = box.encrypt(request.imap.password, password_context(link.id, "imap_password"))
    link.smtp_password_encrypted = box.encrypt(request.smtp.password, password_context(link.id, "smtp_password"))
    for snapshot in snapshots:
        session.add(MailboxFolder(link_id=link.id, role=snapshot.role, name=snapshot.name,
                                  uidvalidity=snapshot.uidvalidity, boundary_uidnext=snapshot.uidnext,
                                  last_uid=snapshot.uidnext - 1))
    audit.record(session, actor.account_id, actor.user_id, "mailbox.link", "mailbox_link", link.id,
                 email=link.email, imap_host=link.imap_host, preset_id=request.preset_id)
    session.commit()
    return link


def reauthenticate(session: Session, actor: Membership, link: MailboxLink, imap_password: str,
                   smtp_password: str | None, policy: ConnectionPolicy, box: SecretBox, now: datetime,
                   verifier: Verifier = verify_mailbox) -> None:
    """Re-enter the passwords of one's own 要再認証 link: verify for real, store them, resume from the checkpoint."""
    _ensure_own(actor, link)
    if link.uses_oauth:
        raise MailboxError("oauth_link", OAUTH_LINK_HAS_NO_PASSWORD)
    smtp_password = smtp_password or imap_password
    imap = ServerSettings(link.imap_host, link.imap_port, link.imap_security, link.imap_username, imap_password)
    smtp = ServerSettings(link.smtp_host, link.smtp_port, link.smtp_security, link.smtp_username, smtp_password,
                          authenticate=link.smtp_auth)
    verifier(imap, smtp, policy)  # raises MailboxError; the stored passwords stay as they were
    link.imap_password_encrypted = box.encrypt(imap_password, password_context(link.id, "imap_password"))
    link.smtp_password_encrypted = box.encrypt(smtp_password, password_context(link.id, "smtp_password"))
    link.state, link.failure_count, link.next_attempt_at = LinkState.ACTIVE, 0, None
    link.last_error, link.last_error_at = None, None
    audit.record(session, link.account_id, actor.user_id, "mailbox.reauth", "mailbox_link", link.id,
                 at=now.isoformat())
    session.commit()


def _unlink(session: Session, link: MailboxLink, reason: UnlinkReason, actor_user_id: int | None,
            now: datetime) -> None:
    """Stop one link; its imported mail is untouched and the stored passwords are wiped."""
    link.state = LinkState.UNLINKED
    link.unlink_reason = reason
    link.unlinked_at = now
    link.imap_password_encrypted = ""
    link.smtp_password_encrypted = ""
    if link.uses_oauth:  # revoked at the provider once this unlink is committed
        oauth.queue_revocation(session, link)
        oauth.wipe_tokens(link)
    audit.record(session, link.account_id, actor_user_id, "mailbox.unlink", "mailbox_link", link.id,
                 reason=reason.value, email=link.email)


def _ensure_own(actor: Membership, link: MailboxLink) -> None:
    """Refuse another member's link: a member re-authenticates and unlinks only their own mailbox."""
    if link.membership_id != actor.id:
        raise PermissionDenied(Action.LINK_OWN_MAILBOX)


def unlink_member_link(session: Session, actor: Membership, link: MailboxLink, now: datetime) -> None:
    """The member unlinks their own mailbox."""
    _ensure_own(actor, link)
    _unlink(session, link, UnlinkReason.BY_MEMBER, actor.user_id, now)
    session.commit()


def unlink_membership(session: Session, membership_id: int, reason: UnlinkReason, actor_user_id: int | None,
                      now: datetime) -> int:
    """Unlink a member's live link (no commit: part of the caller's change); returns how many."""
    link = live_link(session, membership_id)
    if link is None:
        return 0
    _unlink(session, link, reason, actor_user_id, now)
    return 1


def unlink_account(session: Session, account_id: int, reason: UnlinkReason, actor_user_id: int | None,
                   now: datetime) -> int:
    """Unlink every live link of an account (no commit); returns how many."""
    links = session.scalars(for_account(select(MailboxLink), account_id)
                            .where(MailboxLink.state != LinkState.UNLINKED)).all()
    for link in links:
        _unlink(session, link, reason, actor_user_id, now)
    return len(links)


def rotate_encryption_key(session: Session, box: SecretBox) -> int:
    """Re-encrypt every stored password and OAuth2 token made with an old key under the current key; returns how
    many links. An OAuth2 link's tokens matter as much as a password: dropping the old key would strand it."""
    rotated = 0
    for link in session.scalars(select(MailboxLink).where(MailboxLink.imap_password_encrypted != "")):
        if box.needs_rotation(link.imap_password_encrypted) or box.needs_rotation(link.smtp_password_encrypted):
            imap_password, smtp_password = link_passwords(link, box)
            link.imap_password_encrypted = box.encrypt(imap_password, password_context(link.id, "imap_password"))
            link.smtp_password_encrypted = box.encrypt(smtp_password, password_context(link.id, "smtp_password"))
            rotated += 1
    token_columns = ("oauth_access_token", "oauth_refresh_token")
    for link in session.scalars(select(MailboxLink).where(or_(MailboxLink.oauth_access_token_encrypted != "",
                                                              MailboxLink.oauth_refresh_token_encrypted != ""))):
        stale = [column for column in token_columns
                 if getattr(link, column + "_encrypted") and box.needs_rotation(getattr(link, column + "_encrypted"))]
        for column in stale:
            context = oauth.token_context(link.id, column)
            setattr(link, column + "_encrypted", box.encrypt(box.decrypt(getattr(link, column + "_encrypted"),
                                                                         context), context))
        rotated += bool(stale)
    session.commit()
    return rotated
