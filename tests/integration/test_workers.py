"""Worker processes sharing one database (issue 13 item 4): real processes, real Dovecot and aiosmtpd."""
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.automations import services
from portal.extensions import db
from portal.models import Direction, FolderRole, MailMessage, MailSource, MailTemplate, Role, utcnow
from tests.factories import enable_email, make_account, make_customer, make_member
from tests.integration.mailbox import CUSTOMER, Mailbox, mail

ROOT = Path(__file__).resolve().parents[2]
LINKS, STEPS = 8, 4


@pytest.fixture
def busy_account(app, dovecot, pki, smtp_ssl):
    """An account with six members, each with a real mailbox holding one new customer mail, and four customers
    whose automation step is due (sent from the owner's mailbox)."""
    account, owner = make_account()
    enable_email(account, owner)
    make_customer(account, name="山田 太郎", email=CUSTOMER)
    members = [owner] + [make_member(account, Role.USER) for _ in range(LINKS - 1)]
    mailboxes = []
    for number, member in enumerate(members):
        user = dovecot.add_user(f"w{number}-{member.id}@example.jp", f"password-{member.id}")
        mailboxes.append(Mailbox(dovecot, pki, user, member, smtp_ssl))
        mailboxes[-1].deliver(mail(CUSTOMER, user.email, subject=f"受信{number}"))
    template = MailTemplate(account_id=account.id, name="ご案内", subject="ご案内", body="本文")
    db.session.add(template)
    db.session.commit()
    sequence = services.create_sequence(db.session, owner, services.SequenceData(
        name="フォロー", stop_on_reply=True, steps=[services.StepData(0, template.id)]))
    enrolments = [services.enroll_customer(db.session, owner, sequence,
                                           make_customer(account, email=f"step{n}@client.example", assigned=owner),
                                           utcnow())
                  for n in range(STEPS)]
    return mailboxes, enrolments


def run_workers_together(app, pki, dovecot, smtp, record: Path, count: int = 2, stagger: float = 0.0) -> None:
    """Start `count` worker processes, let them go `stagger` seconds apart, wait until each has done its round."""
    settings = {"database_url": app.config["SQLALCHEMY_DATABASE_URI"], "record": str(record),
                "seconds_per_pass": 0.3,
                "config": {"MAIL_CA_FILE": str(pki.ca_file), "MAIL_EXTRA_PORTS": [dovecot.imaps_port, smtp.port],
                           "SYNC_WORKERS": 2, "SYNC_CLAIM_BATCH": 1}}
    processes = [subprocess.Popen([sys.executable, "-m", "tests.integration.worker_process", json.dumps(settings)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                 for _ in range(count)]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready"
        for number, process in enumerate(processes):
            time.sleep(stagger if number else 0)
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            assert process.wait(timeout=120) == 0
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)


def test_two_workers_share_the_links_and_steps_without_doing_any_twice(app, pki, dovecot, smtp_ssl, busy_account,
                                                                        tmp_path):
    """Two `worker --once` processes started together: every link is synced by exactly one of them (never two
    passes of one link at a time, never again in the round), every customer mail is stored once, every due step
    goes out once."""
    mailboxes, enrolments = busy_account
    record = tmp_path / "passes.txt"
    # The second starts while the first is half-way: what the first synced this round is not synced again.
    run_workers_together(app, pki, dovecot, smtp_ssl, record, stagger=0.5)
    lines = [line.split() for line in record.read_text().splitlines()]
    passes = [(int(link), pid, float(start), float(end)) for link, pid, start, end in
              (line for line in lines if line[0] != "step")]
    by_link: dict[int, list[tuple[float, float]]] = {}
    for link_id, _, start, end in passes:
        by_link.setdefault(link_id, []).append((start, end))
    for link_id, intervals in by_link.items():
        intervals.sort()
        assert all(earlier[1] <= later[0] for earlier, later in zip(intervals, intervals[1:])), \
            f"two passes of link {link_id} overlapped: {intervals}"
    assert sorted(by_link) == sorted(m.link.id for m in mailboxes)
    assert Counter(link_id for link_id, *_ in passes) == Counter({m.link.id: 1 for m in mailboxes})
    if db.engine.dialect.name == "postgresql":  # SKIP LOCKED: each claims rows the other is not claiming
        assert len({pid for _, pid, *_ in passes}) == 2, "both workers took a share of the links"
    db.session.expire_all()
    received = db.session.scalars(select(MailMessage.subject).where(MailMessage.direction == Direction.RECEIVED))
    assert sorted(received) == sorted(f"受信{n}" for n in range(LINKS))
    inbox_sources = db.session.scalars(select(MailSource.link_id).where(MailSource.folder_role == FolderRole.INBOX))
    assert Counter(inbox_sources) == Counter({m.link.id: 1 for m in mailboxes})
    steps = Counter(int(line[1]) for line in lines if line[0] == "step")
    assert steps == Counter({e.id: 1 for e in enrolments})
    recipients = Counter(to for message in smtp_ssl.messages for to in message.rcpt_tos)
    assert recipients == Counter({f"step{n}@client.example": 1 for n in range(STEPS)})
