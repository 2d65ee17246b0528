"""Record opens and clicks of tracked mail and summarise them per message; plain functions over a session."""
import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import MailMessage, TrackedLink, TrackingEvent, TrackingKind
from portal.tracking.fetchers import classify
from portal.tracking.tokens import read_click_token, read_open_token

USER_AGENT_LIMIT = 500  # the length of TrackingEvent.user_agent
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


def tracked_message_id(session: Session, secret_key: str, token: str) -> int | None:
    """The id of the tracked message a genuine open token names, else None."""
    message_id = read_open_token(secret_key, token)
    if message_id is None:
        return None
    # Only the id is read: the message row carries the raw mail and bodies, and opens are frequent.
    return session.scalar(select(MailMessage.id).where(MailMessage.id == message_id, MailMessage.tracked.is_(True)))


def tracked_link(session: Session, secret_key: str, token: str) -> TrackedLink | None:
    """The web link a genuine click token names, if it belongs to that tracked message, else None."""
    ids = read_click_token(secret_key, token)
    if ids is None:
        return None
    message_id, link_id = ids
    link = session.scalar(select(TrackedLink).join(TrackedLink.message).where(
        TrackedLink.id == link_id, TrackedLink.message_id == message_id, MailMessage.tracked.is_(True)))
    return link if link is not None and is_web_address(link.url) else None


def record_open(session: Session, secret_key: str, token: str, user_agent: str, now: datetime) -> bool:
    """Record one open of the message the token names; False, recording nothing, unless genuine and tracked."""
    message_id = tracked_message_id(session, secret_key, token)
    if message_id is None:
        return False
    session.add(_event(message_id, TrackingKind.OPEN, None, user_agent, now))
    session.commit()
    return True


def record_click(session: Session, secret_key: str, token: str, user_agent: str, now: datetime) -> str | None:
    """Record one click and return the stored destination; None, recording nothing, unless genuine and tracked."""
    link = tracked_link(session, secret_key, token)
    if link is None:
        return None
    destination = link.url
    session.add(_event(link.message_id, TrackingKind.CLICK, link.id, user_agent, now))
    session.commit()
    return destination


def _event(message_id: int, kind: TrackingKind, link_id: int | None, user_agent: str,
           now: datetime) -> TrackingEvent:
    """A tracking event, labelled when a known machine rather than a person made the request."""
    user_agent = user_agent or ""
    return TrackingEvent(message_id=message_id, kind=kind, link_id=link_id, occurred_at=now,
                         user_agent=user_agent[:USER_AGENT_LIMIT], machine=classify(user_agent))


def tracking_summaries(session: Session, message_ids: list[int]) -> dict[int, TrackingSummary]:
    """A summary for each tracked message among the ids (untracked ones are left out), in three queries at most."""
    if not message_ids:
        return {}
    ids = list(session.scalars(select(MailMessage.id).where(MailMessage.id.in_(set(message_ids)),
                                                            MailMessage.tracked.is_(True))))
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
