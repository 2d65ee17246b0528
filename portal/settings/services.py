"""Account use cases: creating an account with its owner, changing account settings, the demo seed."""
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import audit
from portal.auth.services import normalise_email
from portal.customers.services import CustomerData, create_customer
from portal.mailbox.services import unlink_account
from portal.models import Account, AccountStatus, Membership, Role, UnlinkReason, utcnow
from portal.scoping import for_account
from portal.settings.demo_mail import seed_demo_mail
from portal.users.services import add_member


def create_account(session: Session, name: str, owner_email: str, owner_password: str,
                   owner_name: str | None = None) -> Account:
    """Create an account and its first owner (a new or existing login identity)."""
    account = Account(name=name.strip())
    session.add(account)
    session.flush()
    add_member(session, account, None, owner_email,
               owner_name or normalise_email(owner_email).split("@")[0], Role.OWNER, owner_password)
    return account


def update_account_settings(session: Session, actor: Membership, name: str, viewing_restricted: bool) -> None:
    """Rename the actor's account and switch 担当者閲覧制限."""
    account = actor.account
    changes = {}
    if account.name != name.strip():
        changes["name"] = [account.name, name.strip()]
        account.name = name.strip()
    if account.viewing_restricted != viewing_restricted:
        changes["viewing_restricted"] = [account.viewing_restricted, viewing_restricted]
        account.viewing_restricted = viewing_restricted
    if changes:
        audit.record(session, account.id, actor.user_id, "account.update", "account", account.id, changes=changes)
    session.commit()


ACCOUNT_STATUS_UNLINK_REASONS = {AccountStatus.DISABLED: UnlinkReason.ACCOUNT_DISABLED,
                                 AccountStatus.CANCELLED: UnlinkReason.ACCOUNT_CANCELLED}


def change_account_status(session: Session, actor: Membership | None, status: AccountStatus, now: datetime,
                          account: Account | None = None) -> int:
    """Disable, cancel or re-activate the actor's account (actor None: the operator's CLI, which names the account);
    stopping it unlinks every mailbox. Returns links stopped."""
    account = account or actor.account
    actor_user_id = actor.user_id if actor else None
    if account.status == status:
        return 0
    audit.record(session, account.id, actor_user_id, "account.status", "account", account.id,
                 before=account.status.value, after=status.value)
    account.status = status
    unlinked = 0
    if status in ACCOUNT_STATUS_UNLINK_REASONS:
        unlinked = unlink_account(session, account.id, ACCOUNT_STATUS_UNLINK_REASONS[status], actor_user_id, now)
    session.commit()
    return unlinked


DEMO_ACCOUNT = "デモ株式会社"
DEMO_PASSWORD = "demo-pass-2026"
DEMO_MEMBERS = [
    ("owner@demo.example.jp", "山田 太郎", Role.OWNER),
    ("admin@demo.example.jp", "佐藤 花子", Role.ADMIN),
    ("manager@demo.example.jp", "鈴木 一郎", Role.MANAGER),
    ("user@demo.example.jp", "高橋 美咲", Role.USER),
]
DEMO_CUSTOMERS = [
    ("田中 健", "株式会社サンプル商事", "tanaka@sample-shoji.example.jp"),
    ("伊藤 さくら", "テスト工業株式会社", "ito@test-kogyo.example.jp"),
    ("渡辺 誠", "合同会社デモソリューションズ", "watanabe@demo-solutions.example.com"),
    ("中村 陽子", "株式会社みらい不動産", "nakamura@mirai-fudosan.example.jp"),
]


def database_is_empty(session: Session) -> bool:
    """True when no account exists yet."""
    return session.scalar(select(func.count(Account.id))) == 0


def seed_demo(session: Session) -> Account:
    """Create the demo account with one member per role, a few customers, templates, an automation and mail."""
    owner_email, owner_name, _ = DEMO_MEMBERS[0]
    account = create_account(session, DEMO_ACCOUNT, owner_email, DEMO_PASSWORD, owner_name)
    owner = session.scalar(for_account(select(Membership), account.id))
    members = [owner]
    for email, name, role in DEMO_MEMBERS[1:]:
        members.append(add_member(session, account, owner, email, name, role, DEMO_PASSWORD)[0])
    customers = []
    for index, (name, company, email) in enumerate(DEMO_CUSTOMERS):
        assignee = members[index % len(members)]
        customers.append(create_customer(session, owner, CustomerData(
            name=name, email=email, company=company, assigned_membership_id=assignee.id)))
    seed_demo_mail(session, owner, members, customers, utcnow())
    return account

