"""操作履歴 in Japanese: each audit entry as a sentence naming who did what to whom, and the log's filters."""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from portal.features.services import FEATURE_LABELS
from portal.models import (AccountStatus, AuditLog, Customer, MailboxLink, Membership, Role, UnlinkReason,
                           User)
from portal.policy import ROLE_LABELS
from portal.scoping import for_account, get_in_account

JST = ZoneInfo("Asia/Tokyo")
SYSTEM = "システム"  # entries made from the command line or by the portal itself

# The log's kinds, for the filter: each is one or more action prefixes.
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "users": ("ユーザー管理", ("member.", "invitation.")),
    "customers": ("顧客", ("customer.",)),
    "mailbox": ("メールボックス連携", ("mailbox.",)),
    "mails": ("送受信メール", ("mail.", "thread.")),
    "presets": ("メールボックスサーバーの推奨設定", ("mailbox_preset.",)),
    "features": ("機能契約", ("feature.",)),
    "account": ("アカウント設定", ("account.",)),
    "templates": ("メールテンプレート", ("template.",)),
    "automations": ("セールスオートメーション", ("sequence.", "enrollment.")),
}

UNLINK_CAUSES = {
    UnlinkReason.MEMBER_DISABLED.value: "ユーザーの無効化による自動解除",
    UnlinkReason.MEMBER_DELETED.value: "ユーザーの削除による自動解除",
    UnlinkReason.ACCOUNT_DISABLED.value: "アカウントの無効化による自動解除",
    UnlinkReason.ACCOUNT_CANCELLED.value: "アカウントの解約による自動解除",
    UnlinkReason.FEATURE_OFF.value: "メール機能のオフによる自動解除",
}
ACCOUNT_STATUS_VERBS = {AccountStatus.ACTIVE.value: "有効に戻しました", AccountStatus.DISABLED.value: "無効化しました",
                        AccountStatus.CANCELLED.value: "解約しました"}
CUSTOMER_FIELDS = {"name": "顧客名", "email": "メールアドレス", "company": "会社名", "assigned_membership_id": "担当者"}
ACCOUNT_FIELDS = {"name": "アカウント名", "viewing_restricted": "担当者閲覧制限"}
AUTO_UNLINKED = "（メールボックス連携を自動解除）"


@dataclass(frozen=True)
class AuditLine:
    """One entry of 操作履歴 as people read it."""

    entry: AuditLog
    sentence: str
    kind: str


class Names:
    """The people and things the entries of one page name, loaded at once and only from the account."""

    def __init__(self, session: Session, account_id: int, entries: list[AuditLog]):
        def ids(target_type: str) -> set[int]:
            return {entry.target_id for entry in entries if entry.target_type == target_type and entry.target_id}

        customer_ids = ids("customer") | {entry.details.get("customer_id") for entry in entries
                                          if isinstance(entry.details, dict)
                                          and isinstance(entry.details.get("customer_id"), int)}
        self.members = _by_id(session, for_account(select(Membership), account_id)
                              .where(Membership.id.in_(ids("membership"))))
        self.links = _by_id(session, for_account(select(MailboxLink), account_id)
                            .where(MailboxLink.id.in_(ids("mailbox_link"))))
        self.customers = _by_id(session, for_account(select(Customer), account_id)
                                .where(Customer.id.in_(customer_ids)))
        assignee_ids = {value for entry in entries if entry.action == "customer.update"
                        for value in (entry.details.get("changes", {}).get("assigned_membership_id") or [])
                        if isinstance(value, int)}
        self.members.update(_by_id(session, for_account(select(Membership), account_id)
                                   .where(Membership.id.in_(assignee_ids))))

    def member(self, membership_id, fallback: str = "（不明なユーザー）") -> str:
        """A member's name; the row stays after deletion, so only a foreign id is unknown."""
        member = self.members.get(membership_id)
        return member.user.name if member is not None else fallback

    def link_owner(self, link_id) -> str:
        """The name of the member whose mailbox link it is."""
        link = self.links.get(link_id)
        return link.membership.user.name if link is not None else "（不明なユーザー）"

    def link_email(self, link_id, details: dict) -> str:
        """The linked address, from the entry or its link."""
        link = self.links.get(link_id)
        return details.get("email") or (link.email if link is not None else "")

    def customer(self, customer_id, fallback: str = "") -> str:
        """A customer's name (deleted customers keep their row)."""
        customer = self.customers.get(customer_id)
        return customer.name if customer is not None else (fallback or "（不明な顧客）")


def _by_id(session: Session, stmt: Select) -> dict:
    """Rows of a query keyed by id."""
    return {row.id: row for row in session.scalars(stmt)}


def _role(value) -> str:
    """A stored role value as its Japanese name."""
    try:
        return ROLE_LABELS[Role(value)]
    except ValueError:
        return "（不明な権限）"


def _on_off(value) -> str:
    """A switch as オン or オフ."""
    return "オン" if value else "オフ"


def _quoted(value) -> str:
    """A name in Japanese quotes."""
    return f"「{value}」"


def _customer_changes(entry: AuditLog, names: Names) -> str:
    """What changed in a customer, in words: the changed fields, and the 担当者 by name."""
    changes = entry.details.get("changes") or {}
    parts = []
    for key, label in CUSTOMER_FIELDS.items():
        if key not in changes:
            continue
        before, after = (changes[key] + [None, None])[:2]
        if key == "assigned_membership_id":
            parts.append(f"{label}: {names.member(before, '（未設定）') if before else '（未設定）'} → "
                         f"{names.member(after, '（未設定）') if after else '（未設定）'}")
        else:
            parts.append(label)
    return "、".join(parts)


def _customer_name(entry: AuditLog, names: Names) -> str:
    """The customer's name as recorded, else as it is now."""
    changes = entry.details.get("changes") or {}
    recorded = entry.details.get("name") or (changes.get("name") or [None, None])[-1]
    return names.customer(entry.target_id, recorded or "")


def _account_changes(entry: AuditLog) -> str:
    """The account settings that changed, before → after."""
    parts = []
    for key, label in ACCOUNT_FIELDS.items():
        if key in (entry.details.get("changes") or {}):
            before, after = entry.details["changes"][key]
            if key == "viewing_restricted":
                before, after = _on_off(before), _on_off(after)
            parts.append(f"{label}: {before} → {after}")
    return "（" + "、".join(parts) + "）" if parts else ""


def _unlink(entry: AuditLog, actor: str, names: Names) -> str:
    """Unlinking by the member, or automatically because of another change."""
    email = names.link_email(entry.target_id, entry.details)
    cause = UNLINK_CAUSES.get(entry.details.get("reason"))
    if cause is None:
        return f"{actor} がメールボックス連携（{email}）を解除しました"
    return f"{actor} が {names.link_owner(entry.target_id)} のメールボックス連携（{email}）を解除しました（{cause}）"


def _feature(entry: AuditLog, actor: str, on: bool) -> str:
    """A paid feature switched on or off."""
    label = FEATURE_LABELS.get(entry.details.get("feature"), "有料オプション")
    if on:
        return f"{actor} が{label}機能をオンにしました（課金開始）"
    return f"{actor} が{label}機能をオフにしました（課金停止、すべてのメールボックス連携を解除）"


def _template(entry: AuditLog, actor: str, verb: str) -> str:
    """A mail template created, changed or deleted."""
    shared = "共有" if entry.details.get("shared") else ""
    return f"{actor} が{shared}メールテンプレート{_quoted(entry.details.get('name', ''))}を{verb}しました"


def _auto(entry: AuditLog) -> str:
    """The note that a member change also stopped their mailbox link."""
    return AUTO_UNLINKED if entry.details.get("mailbox_unlinked") else ""


Sentence = Callable[[AuditLog, str, Names], str]
SENTENCES: dict[str, Sentence] = {
    "member.add": lambda e, a, n: f"{a} が {e.details.get('email', '')} を{_role(e.details.get('role'))}として追加しました",
    "member.role": lambda e, a, n: (f"{a} が {n.member(e.target_id)} の権限を{_role(e.details.get('before'))}から"
                                    f"{_role(e.details.get('after'))}に変更しました"),
    "member.disable": lambda e, a, n: f"{a} が {n.member(e.target_id)} を無効化しました{_auto(e)}",
    "member.enable": lambda e, a, n: f"{a} が {n.member(e.target_id)} を有効に戻しました",
    "member.delete": lambda e, a, n: f"{a} が {n.member(e.target_id)} を削除しました{_auto(e)}",
    "member.invite": lambda e, a, n: f"{a} が {e.details.get('email', '')} を{_role(e.details.get('role'))}として招待しました",
    "member.invite_renew": lambda e, a, n: f"{a} が {e.details.get('email', '')} への招待リンクを発行し直しました",
    "member.invite_cancel": lambda e, a, n: f"{a} が {e.details.get('email', '')} への招待を取り消しました",
    "member.reset_link": lambda e, a, n: f"{a} が {n.member(e.target_id)} のパスワード再設定リンクを発行しました",
    "member.join": lambda e, a, n: f"{a} が招待を承諾し、{_role(e.details.get('role'))}として参加しました",
    "invitation.decline": lambda e, a, n: f"{a}（{e.details.get('email', '')}）が招待を辞退しました",
    "customer.create": lambda e, a, n: f"{a} が顧客{_quoted(_customer_name(e, n))}を登録しました",
    "customer.update": lambda e, a, n: (f"{a} が顧客{_quoted(_customer_name(e, n))}を変更しました"
                                        + (f"（{_customer_changes(e, n)}）" if _customer_changes(e, n) else "")),
    "customer.delete": lambda e, a, n: f"{a} が顧客{_quoted(_customer_name(e, n))}を削除しました",
    "mail.delete": lambda e, a, n: f"{a} がメール{_quoted(e.details.get('subject') or '（件名なし）')}を削除しました",
    "mailbox.link": lambda e, a, n: (f"{a} がメールボックス（{n.link_email(e.target_id, e.details)}）を連携しました"
                                     + ("（OAuth2）" if e.details.get("auth_method") == "oauth2" else "")),
    "mailbox.reauth": lambda e, a, n: f"{a} がメールボックス連携（{n.link_email(e.target_id, e.details)}）を再認証しました",
    "mailbox.unlink": lambda e, a, n: _unlink(e, a, n),
    "feature.on": lambda e, a, n: _feature(e, a, True),
    "feature.off": lambda e, a, n: _feature(e, a, False),
    "template.create": lambda e, a, n: _template(e, a, "作成"),
    "template.update": lambda e, a, n: _template(e, a, "変更"),
    "template.delete": lambda e, a, n: _template(e, a, "削除"),
    "mailbox_preset.create": lambda e, a, n: f"{a} がメールボックスサーバーの推奨設定{_quoted(e.details.get('name', ''))}を追加しました",
    "mailbox_preset.update": lambda e, a, n: f"{a} がメールボックスサーバーの推奨設定{_quoted(e.details.get('name', ''))}を変更しました",
    "mailbox_preset.delete": lambda e, a, n: f"{a} がメールボックスサーバーの推奨設定{_quoted(e.details.get('name', ''))}を削除しました",
    "account.update": lambda e, a, n: f"{a} がアカウント設定を変更しました{_account_changes(e)}",
    "account.status": lambda e, a, n: f"{a} がアカウントを{ACCOUNT_STATUS_VERBS.get(e.details.get('after'), '変更しました')}",
    "sequence.create": lambda e, a, n: f"{a} がセールスオートメーション{_quoted(e.details.get('name', ''))}を作成しました",
    "sequence.update": lambda e, a, n: f"{a} がセールスオートメーション{_quoted(e.details.get('name', ''))}を変更しました",
    "sequence.delete": lambda e, a, n: f"{a} がセールスオートメーション{_quoted(e.details.get('name', ''))}を削除しました",
    "enrollment.create": lambda e, a, n: (f"{a} が顧客{_quoted(n.customer(e.details.get('customer_id')))}を"
                                          f"セールスオートメーション{_quoted(e.details.get('sequence', ''))}に登録しました"),
    "enrollment.stop": lambda e, a, n: (f"{a} が顧客{_quoted(n.customer(e.details.get('customer_id')))}の"
                                        f"セールスオートメーション{_quoted(e.details.get('sequence', ''))}を停止しました"),
}


def kind_of(action: str) -> str:
    """The kind an action belongs to, for the table and the filter."""
    for label, prefixes in KINDS.values():
        if action.startswith(prefixes):
            return label
    return "その他"


def sentence(entry: AuditLog, names: Names) -> str:
    """The entry as one Japanese sentence; an action without its own sentence still reads as words, not a key."""
    actor = entry.actor.name if entry.actor is not None else SYSTEM
    if not isinstance(entry.details, dict):
        entry.details = {}
    describe = SENTENCES.get(entry.action)
    if describe is None:
        return f"{actor} が{kind_of(entry.action)}の操作を行いました"
    return describe(entry, actor, names)


def describe(session: Session, account_id: int, entries: list[AuditLog]) -> list[AuditLine]:
    """The entries of one page as sentences."""
    names = Names(session, account_id, entries)
    return [AuditLine(entry=entry, sentence=sentence(entry, names), kind=kind_of(entry.action)) for entry in entries]


@dataclass(frozen=True)
class AuditFilters:
    """The log's filters: a member (as actor or as the one acted on), a kind, a date range in Japan time."""

    membership_id: int | None = None
    kind: str | None = None
    date_from: date | None = None
    date_to: date | None = None


def _jst_midnight(day: date) -> datetime:
    """The UTC instant a Japan date starts."""
    return datetime.combine(day, time.min, tzinfo=JST).astimezone(timezone.utc)


def log_query(session: Session, account_id: int, filters: AuditFilters) -> Select:
    """The account's entries matching the filters, newest first."""
    stmt = for_account(select(AuditLog), account_id)
    if filters.membership_id is not None:
        if not 0 < filters.membership_id < 2 ** 31:  # past PostgreSQL's integer: no such member (not a 500)
            return stmt.where(False)
        member = get_in_account(session, Membership, filters.membership_id, account_id)
        if member is None:
            return stmt.where(False)
        links = for_account(select(MailboxLink.id), account_id).where(MailboxLink.membership_id == member.id)
        stmt = stmt.where(or_(AuditLog.actor_user_id == member.user_id,
                              (AuditLog.target_type == "membership") & (AuditLog.target_id == member.id),
                              (AuditLog.target_type == "mailbox_link") & AuditLog.target_id.in_(links)))
    if filters.kind in KINDS:
        stmt = stmt.where(or_(*(AuditLog.action.startswith(prefix, autoescape=True)
                                for prefix in KINDS[filters.kind][1])))
    if filters.date_from:
        stmt = stmt.where(AuditLog.created_at >= _jst_midnight(filters.date_from))
    if filters.date_to:
        stmt = stmt.where(AuditLog.created_at < _jst_midnight(filters.date_to + timedelta(days=1)))
    return stmt.order_by(AuditLog.created_at.desc(), AuditLog.id.desc())


def filter_members(session: Session, account_id: int) -> list[Membership]:
    """Every member the log can name, deleted ones included (their history stays), by name."""
    return list(session.scalars(for_account(select(Membership).join(User, User.id == Membership.user_id), account_id)
                                .order_by(User.name, Membership.id)))

