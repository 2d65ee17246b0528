"""Record opens and clicks of tracked mail and summarise them per message; plain functions over a session."""
import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import MailMessage, TrackedLink, TrackingEvent, TrackingKind
from portal.scoping import for_account
from portal.tracking.fetchers import classify
from portal.tracking.tokens import read_click_token, read_open_token

USER_AGENT_LIMIT = 500  # the length of TrackingEvent.user_agent
# One counted open (or click of one link) per client in this window: a mail client fetching the image again, or
# someone replaying a token, does not make a message look read more often.
DEFAULT_COUNT_WINDOW = timedelta(minutes=5)
WEB_SCHEMES = ("http", "https")
_UNSAFE_URL_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")


@dataclass
class LinkClicks:
    """How one tracked link was followed: people's clicks, with machine fetches counted apart."""

    link_id: int
    url: str
    position: int
    first_clicked_at: datetime | None = None  # a person's first click; None when only machines followed it
    click_count: int = 0  # clicks by people
    machine_click_count: int = 0
    machine_labels: set[str] = field(default_factory=set)


@dataclass
class TrackingSummary:
    """What became of one tracked message: people's opens and clicks, with machine fetches counted apart."""

    message_id: int
    first_open_at: datetime | None = None  # a person's first open; machine fetches never count as opened
    open_count: int = 0  # opens by people
    machine_open_count: int = 0
    machine_labels: set[str] = field(default_factory=set)  # the machines among the opens
    clicks: list[LinkClicks] = field(default_factory=list)  # links followed at least once, in body order


def is_web_address(url: str) -> bool:
    """True for an absolute http(s) address with a host, so a redirect can only lead to a web page."""
    if not url or _UNSAFE_URL_CHARACTERS.search(url):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in WEB_SCHEMES and bool(parts.hostname)
    except ValueError:
        return False


def _message_named(ref) -> object:
    """The condition on MailMessage for the message a token names (its tracking id; older mail: its id)."""
    if ref.tracking_id is not None:
        return MailMessage.tracking_id == ref.tracking_id
    return (MailMessage.id == ref.legacy_message_id) & MailMessage.tracking_id.is_(None)


def tracked_message_id(session: Session, secret_key: str, token: str) -> int | None:
    """The id of the tracked message a genuine open token names, else None."""
    ref = read_open_token(secret_key, token)
    if ref is None:
        return None
    # Only the id is read: the message row carries the raw mail and bodies, and opens are frequent.
    return session.scalar(select(MailMessage.id).where(_message_named(ref), MailMessage.tracked.is_(True)))


def tracked_link(session: Session, secret_key: str, token: str) -> TrackedLink | None:
    """The web link a genuine click token names, if it belongs to that tracked message, else None."""
    ref = read_click_token(secret_key, token)
    if ref is None:
        return None
    which = (TrackedLink.position == ref.link_position if ref.tracking_id is not None
             else TrackedLink.id == ref.legacy_link_id)
    link = session.scalar(select(TrackedLink).join(TrackedLink.message).where(
        which, _message_named(ref), MailMessage.tracked.is_(True)))
    return link if link is not None and is_web_address(link.url) else None


def client_key(secret_key: str, address: str | None) -> str:
    """Who fetched, as a keyed hash of the address (an IPv6 client by its /64): counts, not a log of addresses."""
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
        network = ipaddress.ip_network(f"{ip}/64", strict=False) if ip.version == 6 else ip
        text = str(network)
    except ValueError:
        text = ""
    return hmac.new(secret_key.encode(), b"tracking-client:" + text.encode(), hashlib.sha256).hexdigest()[:32]


def _counted_recently(session: Session, event: TrackingEvent, since: datetime) -> bool:
    """Whether this client's open (or click of this link) was already counted in the window.

    People and each kind of machine are counted apart: a company's mail scanner fetching first, from the same
    address as the person who then opens the mail, does not swallow that person's open.
    """
    return session.scalar(select(TrackingEvent.id).where(
        TrackingEvent.message_id == event.message_id, TrackingEvent.kind == event.kind,
        TrackingEvent.link_id.is_(None) if event.link_id is None else TrackingEvent.link_id == event.link_id,
        TrackingEvent.machine.is_(None) if event.machine is None else TrackingEvent.machine == event.machine,
        TrackingEvent.client_key == event.client_key, TrackingEvent.occurred_at > since).limit(1)) is not None


def record_open(session: Session, secret_key: str, token: str, user_agent: str, now: datetime,
                client_address: str | None = None, window: timedelta = DEFAULT_COUNT_WINDOW) -> bool:
    """Count an open of the message the token names, once per client in the window.

    True for a genuine token of a tracked message (the image is served), counted or not; False otherwise.
    """
    message_id = tracked_message_id(session, secret_key, token)
    if message_id is None:
        return False
    event = _event(message_id, TrackingKind.OPEN, None, user_agent, client_key(secret_key, client_address), now)
    if not _counted_recently(session, event, now - window):
        session.add(event)
        session.commit()
    return True


def record_click(session: Session, secret_key: str, token: str, user_agent: str, now: datetime,
                 client_address: str | None = None, window: timedelta = DEFAULT_COUNT_WINDOW) -> str | None:
    """Count a click (once per client and link in the window) and return the stored destination.

    None, recording nothing, unless the token is genuine and its message tracked.
    """
    link = tracked_link(session, secret_key, token)
    if link is None:
        return None
    destination = link.url
    event = _event(link.message_id, TrackingKind.CLICK, link.id, user_agent, client_key(secret_key, client_address),
                   now)
    if not _counted_recently(session, event, now - window):
        session.add(event)
        session.commit()
    return destination


def _event(message_id: int, kind: TrackingKind, link_id: int | None, user_agent: str, client: str,
           now: datetime) -> TrackingEvent:
    """A tracking event, labelled when a known machine rather than a person made the request."""
    user_agent = user_agent or ""
    return TrackingEvent(message_id=message_id, kind=kind, link_id=link_id, occurred_at=now, client_key=client,
                         user_agent=user_agent[:USER_AGENT_LIMIT], machine=classify(user_agent))


def tracking_summaries(session: Session, account_id: int, message_ids: list[int]) -> dict[int, TrackingSummary]:
    """A summary for each tracked message of the account among the ids (untracked ones and another account's are
    left out), in three queries at most."""
    if not message_ids:
        return {}
    ids = list(session.scalars(for_account(select(MailMessage.id), account_id)
                               .where(MailMessage.id.in_(set(message_ids)), MailMessage.tracked.is_(True))))
    summaries = {message_id: TrackingSummary(message_id) for message_id in ids}
    if not ids:
        return summaries
    # Grouping by the machine label keeps people's events (label NULL) apart from each machine's.
    opens = session.execute(
        select(TrackingEvent.message_id, TrackingEvent.machine, func.count(), func.min(TrackingEvent.occurred_at))
        .where(TrackingEvent.message_id.in_(ids), TrackingEvent.kind == TrackingKind.OPEN)
        .group_by(TrackingEvent.message_id, TrackingEvent.machine))
    for message_id, machine, count, first in opens:
        summary = summaries[message_id]
        if machine is None:
            summary.open_count, summary.first_open_at = count, first
        else:
            summary.machine_open_count += count
            summary.machine_labels.add(machine)
    clicks = session.execute(
        select(TrackingEvent.message_id, TrackedLink.id, TrackedLink.position, TrackedLink.url, TrackingEvent.machine,
               func.count(), func.min(TrackingEvent.occurred_at))
        .join(TrackedLink, TrackedLink.id == TrackingEvent.link_id)
        .where(TrackingEvent.message_id.in_(ids), TrackingEvent.kind == TrackingKind.CLICK)
        .group_by(TrackingEvent.message_id, TrackedLink.id, TrackedLink.position, TrackedLink.url,
                  TrackingEvent.machine)
        .order_by(TrackingEvent.message_id, TrackedLink.position))
    links: dict[int, LinkClicks] = {}
    for message_id, link_id, position, url, machine, count, first in clicks:
        link = links.get(link_id)
        if link is None:
            link = links[link_id] = LinkClicks(link_id, url, position)
            summaries[message_id].clicks.append(link)
        if machine is None:
            link.click_count, link.first_clicked_at = count, first
        else:
            link.machine_click_count += count
            link.machine_labels.add(machine)
    return summaries
