"""Sharing work between worker processes: links and automation steps claimed in small batches, lost leases."""
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from portal.automations import services
from portal.automations.runner import claim_due_steps, send_due_steps
from portal.background import session_scope
from portal.config import load_settings
from portal.extensions import db
from portal.mailsync.client import FetchedEnvelope, FolderInfo
from portal.mailsync.engine import EngineConfig
from portal.mailsync.runner import claim_due_links, sync_one
from portal.models import Enrollment, MailboxFolder, MailboxLink, MailMessage, MailTemplate, Role, utcnow
from tests.factories import enable_email, make_account, make_customer, make_link, make_member
from tests.fakes import FakeSmtp, environment

CUSTOMER = "yamada@client.example"


def due_links() -> list[MailboxLink]:
    """Three members of an account with メール on, each with a link that is due."""
    account, owner = make_account()
    enable_email(account, owner)
    return [make_link(member) for member in (owner, make_member(account, Role.USER), make_member(account, Role.USER))]


@pytest.fixture
def links(app):
    """Due links on the suite's database."""
    return due_links()


@pytest.fixture
def postgresql_links(postgresql_app):
    """Due links on PostgreSQL (row locks, FOR UPDATE SKIP LOCKED, exist there only)."""
    return due_links()


def test_each_due_link_is_claimed_by_one_worker(links):
    """Two claims in a round never get the same link; a link synced in this round or leased is left out."""
    now = run_started = utcnow()
    first, last_id = claim_due_links(db.session, now, 60, 0, run_started, 2)
    assert last_id == links[1].id
    second, _ = claim_due_links(db.session, now, 60, 0, run_started, 2)
    assert [link_id for link_id, _ in first + second] == [link.id for link in links]
    assert len({token for _, token in first + second}) == 3  # one pass token per link
    assert claim_due_links(db.session, now, 60, 0, run_started, 2) == ([], None)
    db.session.execute(update(MailboxLink).values(lease_owner=None, lease_expires_at=None))
    db.session.execute(update(MailboxLink).where(MailboxLink.id == links[0].id).values(last_synced_at=now))
    db.session.commit()
    later = now + timedelta(seconds=1)
    assert [link_id for link_id, _ in claim_due_links(db.session, later, 60, 0, run_started, 5)[0]] == \
        [link.id for link in links[1:]]
    claimed, _ = claim_due_links(db.session, later + timedelta(seconds=61), 60, links[1].id, run_started, 5)
    assert [link_id for link_id, _ in claimed] == [links[2].id]  # a lapsed lease is claimed again; the cursor
    # skips what this round has passed


def test_a_link_locked_by_another_workers_claim_is_skipped_not_waited_for(postgresql_app, postgresql_links):
    """PostgreSQL: FOR UPDATE SKIP LOCKED hands out the rows another claim is not holding, at once."""
    app, links = postgresql_app, postgresql_links
    assert db.engine.dialect.name == "postgresql"
    mine = db.session()  # the test's session: inside the scope below db.session is the other worker's
    with session_scope(app)() as other:
        other.execute(select(MailboxLink.id).where(MailboxLink.id == links[0].id).with_for_update())
        started = time.monotonic()
        claimed, _ = claim_due_links(mine, utcnow(), 60, 0, utcnow(), 5)
        assert time.monotonic() - started < 2
        other.rollback()
    assert [link_id for link_id, _ in claimed] == [link.id for link in links[1:]]


class StolenLeaseClient:
    """A mailbox with two new customer mails; while the pass fetches them, another pass takes the link's lease."""

    def __init__(self, app, link: MailboxLink, folders: dict[str, MailboxFolder]):
        self.app, self.link_id = app, link.id
        self.info = {name: FolderInfo(f.uidvalidity, f.last_uid + (3 if name == "INBOX" else 1))
                     for name, f in folders.items()}

    def examine(self, folder):
        return self.info[folder]

    def fetch_envelopes(self, first_uid, last_uid):
        with session_scope(self.app)() as session:
            session.execute(update(MailboxLink).where(MailboxLink.id == self.link_id)
                            .values(lease_owner="other-host:1:abc", lease_expires_at=utcnow() + timedelta(minutes=5)))
            session.commit()
        time.sleep(1.2)  # the heartbeat (every third of a second) finds out
        return [FetchedEnvelope(uid, 300, utcnow(), self.raw(uid)) for uid in range(first_uid, last_uid + 1)]

    def fetch_raw(self, uids):
        return {uid: self.raw(uid) + b"\r\nbody\r\n" for uid in uids}

    @staticmethod
    def raw(uid):
        return (f"From: {CUSTOMER}\r\nTo: owner@example.jp\r\nSubject: test {uid}\r\n"
                f"Message-ID: <m{uid}@client.example>\r\n").encode()

    def uids_since(self, day):
        return []

    def close(self):
        pass


def test_a_pass_that_loses_its_lease_stops_without_committing(app, links):
    """The heartbeat finds the lease taken by another pass: this pass stores nothing more and leaves the link alone."""
    link = links[0]
    make_customer(link.membership.account, email=CUSTOMER)
    folders = {f.name: f for f in link.folders}
    last_uids = {name: f.last_uid for name, f in folders.items()}
    client = StolenLeaseClient(app, link, folders)
    result = sync_one(session_scope(app), link.id, lambda _: client, utcnow, EngineConfig(lease_seconds=1))
    assert result.skipped and result.error == "別の処理が同期中です。"
    db.session.expire_all()
    assert db.session.scalar(select(MailMessage.id)) is None
    assert {f.name: f.last_uid for f in db.session.get(MailboxLink, link.id).folders} == last_uids
    stored = db.session.get(MailboxLink, link.id)
    assert stored.last_synced_at is None and stored.lease_owner == "other-host:1:abc"  # the other pass keeps it


@pytest.fixture
def enrolments(app):
    """Enrolments with due steps on the suite's database."""
    return due_enrolments()


@pytest.fixture
def postgresql_enrolments(postgresql_app):
    """Enrolments with due steps on PostgreSQL."""
    return due_enrolments()


def due_enrolments() -> list[Enrollment]:
    """Three customers of a member with a linked mailbox, each enrolled in a sequence whose steps have no wait."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    template = MailTemplate(account_id=account.id, name="ご案内", subject="ご案内", body="本文")
    db.session.add(template)
    db.session.commit()
    sequence = services.create_sequence(db.session, owner, services.SequenceData(
        name="フォロー", stop_on_reply=True, steps=[services.StepData(0, template.id), services.StepData(0, template.id)]))
    start = utcnow() - timedelta(minutes=1)
    return [services.enroll_customer(db.session, owner, sequence,
                                     make_customer(account, email=f"c{n}@client.example", assigned=owner), start)
            for n in range(3)]


def test_each_due_step_is_claimed_once(enrolments):
    """A claimed step is pushed out of reach of every other runner until it is sent or retried."""
    now = utcnow()
    first, second = claim_due_steps(db.session, now, 2), claim_due_steps(db.session, now, 2)
    assert sorted(first + second) == sorted(e.id for e in enrolments) and not set(first) & set(second)
    assert claim_due_steps(db.session, now, 2) == []


def test_a_step_locked_by_another_runners_claim_is_skipped_not_waited_for(postgresql_app, postgresql_enrolments):
    """PostgreSQL: the claim skips the enrolment another runner is claiming right now."""
    app, enrolments = postgresql_app, postgresql_enrolments
    assert db.engine.dialect.name == "postgresql"
    mine = db.session()  # the test's session: inside the scope below db.session is the other runner's
    with session_scope(app)() as other:
        other.execute(select(Enrollment.id).where(Enrollment.id == enrolments[0].id).with_for_update())
        claimed = claim_due_steps(mine, utcnow(), 5)
        other.rollback()
    assert sorted(claimed) == sorted(e.id for e in enrolments[1:])


def test_a_run_sends_one_step_per_enrolment_even_when_the_next_has_no_wait(enrolments):
    """Claiming in batches until nothing is due must not send a no-wait next step in the same run."""
    smtp = FakeSmtp()
    assert send_due_steps(db.session, utcnow(), environment(smtp)) == 3
    assert sorted(m["To"] for m in smtp.sent) == [f"c{n}@client.example" for n in range(3)]


def test_scheduler_enabled_by_default_and_off_with_zero(tmp_path):
    """SCHEDULER_ENABLED=0 serves the web without background jobs (workers run them)."""
    assert load_settings(str(tmp_path), {})["SCHEDULER_ENABLED"] is True
    assert load_settings(str(tmp_path), {"SCHEDULER_ENABLED": "0"})["SCHEDULER_ENABLED"] is False
