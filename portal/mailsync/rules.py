"""The import rules as pure functions over a message's envelope and a snapshot of the account."""
import enum
from dataclasses import dataclass, field
from datetime import datetime

from portal.mailsync.headers import parse_emails


class Exclusion(str, enum.Enum):
    """Why a fetched message was not imported (shown in the import log)."""

    BEFORE_LINK = "before_link"
    NO_CUSTOMER = "no_customer"
    CC_ONLY = "cc_only"
    MEMBER_ADDRESS = "member_address"
    BEFORE_CUSTOMER = "before_customer"
    TOO_LARGE = "too_large"
    DELETED = "deleted"  # deleted in the portal: its tombstone keeps it out for good


EXCLUSION_LABELS = {
    Exclusion.BEFORE_LINK: "連携より前に届いたメールです",
    Exclusion.NO_CUSTOMER: "From・To に登録済みの顧客のアドレスがありません",
    Exclusion.CC_ONLY: "顧客のアドレスが Cc/Bcc にしかありません",
    Exclusion.MEMBER_ADDRESS: "顧客と同じアドレスがポータルのユーザーのものです",
    Exclusion.BEFORE_CUSTOMER: "顧客の登録より前に届いたメールです",
    Exclusion.TOO_LARGE: "サイズが上限を超えています",
    Exclusion.DELETED: "ポータルで削除されたメールです（再び取り込むことはありません）",
}


@dataclass(frozen=True)
class CustomerRef:
    """What the rules need of a customer."""

    id: int
    email: str
    created_at: datetime


@dataclass(frozen=True)
class AccountSnapshot:
    """The account's live customers by address and its members' addresses, read once per pass."""

    customers: dict[str, CustomerRef]
    member_addresses: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Envelope:
    """The few headers the rules look at, plus the server's arrival time and UID."""

    uid: int
    internal_date: datetime
    from_: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""


@dataclass(frozen=True)
class Decision:
    """Import (with the matched customers) or not (with the first reason)."""

    customer_ids: tuple[int, ...] = ()
    exclusion: Exclusion | None = None

    @property
    def imported(self) -> bool:
        """True when the message comes in."""
        return self.exclusion is None


def addresses(header_value: str) -> list[str]:
    """The addresses in a header, lower-cased (a linear parser: getaddresses recurses to death on some headers)."""
    return [email for email in parse_emails(header_value or "") if "@" in email]


def whole_seconds(moment: datetime) -> datetime:
    """INTERNALDATE has one-second resolution: compare our own timestamps at that resolution too."""
    return moment.replace(microsecond=0)


def decide(envelope: Envelope, snapshot: AccountSnapshot, boundary_uid: int) -> Decision:
    """Apply the rules: after the link, a customer in From or To (not a member's address), customer existed."""
    if envelope.uid < boundary_uid:
        return Decision(exclusion=Exclusion.BEFORE_LINK)
    from_addresses, to_addresses = addresses(envelope.from_), addresses(envelope.to)
    counted = [a for a in from_addresses + to_addresses if a not in snapshot.member_addresses]
    matched = {a: snapshot.customers[a] for a in counted if a in snapshot.customers}
    existing = sorted({c.id for c in matched.values() if whole_seconds(c.created_at) <= envelope.internal_date})
    if existing:
        return Decision(customer_ids=tuple(existing))
    if matched:
        return Decision(exclusion=Exclusion.BEFORE_CUSTOMER)
    if any(a in snapshot.customers for a in from_addresses + to_addresses):
        return Decision(exclusion=Exclusion.MEMBER_ADDRESS)
    if any(a in snapshot.customers for a in addresses(envelope.cc) + addresses(envelope.bcc)):
        return Decision(exclusion=Exclusion.CC_ONLY)
    return Decision(exclusion=Exclusion.NO_CUSTOMER)
