"""Faults from the outside (issue 14): interrupted re-baselines, leases, expunges mid-fetch against a real Dovecot;
login answers Dovecot cannot give on demand from a fake server."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from portal import background
from portal.extensions import db
from portal.mailbox.credentials import StoredPasswords
from portal.mailsync.connection import ConnectionPolicy
from portal.mailsync.engine import EngineConfig, sync_link
from portal.mailsync.network import parse_networks
from portal.mailsync.runner import connector, due_link_ids
from portal.models import Customer, ImportLogEntry, LinkState, MailMessage, Security, utcnow
from portal.secretbox import SecretBox
from tests.factories import LOOPBACK_NETWORKS, TEST_KEY, make_link
from tests.fakes import FakeImapServer
from tests.integration.mailbox import CUSTOMER, Mailbox, mail


def subjects() -> list[str]:
    """Subjects of every stored message, sorted (a duplicate shows twice)."""
    db.session.expire_all()
    return sorted(db.session.scalars(select(MailMessage.subject)))


class FailOnCall:
    """Wraps a mailbox client and drops the connection on the n-th call of one method, as a dying network would."""

    def __init__(self, client, method: str, fail_on: int):
        self.client, self.method, self.fail_on, self.calls = client, method, fail_on, 0

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if name != self.method:
            return attribute

        def counted(*args, **kwargs):
            """Fail on the chosen call, pass the rest through."""
            self.calls += 1
            if self.calls == self.fail_on:
                raise ConnectionResetError("connection dropped")
            return attribute(*args, **kwargs)
        return counted


def run_until_done(box: Mailbox, config: EngineConfig, passes: int = 6) -> None:
    """Let passes run (backoff waived) until one ends cleanly."""
    for _ in range(passes):
        box.link.next_attempt_at = None
        db.session.commit()
        if box.sync(config).state == LinkState.ACTIVE:
            return
    raise AssertionError("the link never synced cleanly")


@pytest.fixture
def customer_from_yesterday(account):
    """The customer existed long before the link, so only the link time can keep old mail out."""
    customer = db.session.scalar(select(Customer).where(Customer.email == CUSTOMER))
    customer.created_at = datetime.now(timezone.utc) - timedelta(days=1)
    db.session.commit()


@pytest.mark.parametrize("method,fail_on", [
    ("uids_since", 1),        # right after the reset, before the rescan looked at anything
    ("fetch_envelopes", 1),   # the rescan's first batch
    ("fetch_raw", 1),         # the first batch's bodies
    ("fetch_envelopes", 2),   # mid-rescan, after a committed batch
    ("fetch_raw", 3),         # mid-rescan, later
])
def test_interrupted_rebaseline_never_imports_mail_from_before_the_link(customer_from_yesterday, account, dovecot,
                                                                         pki, mail_user, smtp_ssl, method, fail_on):
    """A UIDVALIDITY change, the rescan broken at each step: pre-link mail stays out, post-link mail comes in once."""
    before_link = datetime.now(timezone.utc) - timedelta(hours=1)
    user = mail_user
    old = [mail(user.email, CUSTOMER, subject=f"連携前{n}", when=before_link) for n in range(3)]
    new = [mail(user.email, CUSTOMER, subject=f"連携後{n}") for n in range(5)]
    for raw in old:
        dovecot.append(user.email, user.password, "Sent", raw, msg_time=before_link)
    mailbox = Mailbox(dovecot, pki, user, account[1], smtp_ssl)
    mailbox.deliver(new[0], folder="Sent")
    config = EngineConfig(batch_size=2)
    mailbox.sync(config)
    assert subjects() == ["連携後0"]
    # Sent is rebuilt (new UIDVALIDITY): the old mail, the known message and four new ones, mixed.
    mailbox.dovecot.delete_folder(user.email, user.password, "Sent")
    mailbox.dovecot.create_folder(user.email, user.password, "Sent")
    for index, raw in enumerate(new):
        if index < len(old):
            mailbox.deliver(old[index], folder="Sent", when=before_link)
        mailbox.deliver(raw, folder="Sent")
    real = connector(StoredPasswords(SecretBox(TEST_KEY)), mailbox.policy)
    broken = mailbox.sync(config, connect=lambda link: FailOnCall(real(link), method, fail_on))
    assert broken.state == LinkState.ERROR
    assert not [s for s in subjects() if s.startswith("連携前")]
    run_until_done(mailbox, config)
    assert subjects() == [f"連携後{n}" for n in range(5)]
    mailbox.deliver(mail(user.email, CUSTOMER, subject="再構築後"), folder="Sent")
    run_until_done(mailbox, config)
    assert subjects() == sorted([f"連携後{n}" for n in range(5)] + ["再構築後"])


def configure(app, pki, dovecot, smtp_ssl, **settings):
    """Let the app reach the test servers."""
    app.config.update(MAIL_CA_FILE=str(pki.ca_file), MAIL_EXTRA_PORTS=[dovecot.imaps_port, smtp_ssl.port], **settings)


def test_two_passes_over_one_link_in_one_process_one_skips(app, mailbox, pki, dovecot, smtp_ssl, monkeypatch):
    """The scheduler and 「今すぐ同期」 share a process: while one pass holds the link, the other skips."""
    configure(app, pki, dovecot, smtp_ssl)
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="同時実行"))
    first_result = threading.Event()
    real_connector = background.mailbox_connector

    def gated_connector(config, **options):
        """Each pass waits (a while at most) until the other one has answered, so the two surely overlap."""
        connect = real_connector(config, **options)

        def gated(link):
            first_result.wait(timeout=5)
            return connect(link)
        return gated
    monkeypatch.setattr(background, "mailbox_connector", gated_connector)
    results, link_id = [], mailbox.link.id

    def run():
        results.extend(background.run_sync(app, [link_id]))
        first_result.set()
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(result.skipped for result in results) == [False, True]
    assert [r.error for r in results if r.skipped] == ["別の処理が同期中です。"]
    assert subjects() == ["同時実行"]


def test_a_killed_pass_frees_its_mailbox_within_the_lease(app, mailbox, pki, dovecot, smtp_ssl):
    """kill -9 in the middle of a pass: the heartbeat had kept the lease past its length; once dead, it lapses."""
    lease_seconds = 3
    configure(app, pki, dovecot, smtp_ssl, SYNC_LEASE_SECONDS=lease_seconds, SYNC_BATCH_SIZE=1)
    sent = [f"大量{n:02d}" for n in range(20)]
    for subject in sent:
        mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject=subject))
    settings = {"database_url": app.config["SQLALCHEMY_DATABASE_URI"], "link_id": mailbox.link.id,
                "config": {k: v for k, v in app.config.items() if k.startswith(("MAIL_", "SYNC_"))}}
    process = subprocess.Popen([sys.executable, "-m", "tests.integration.pass_process", json.dumps(settings)],
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert process.stdout.readline().strip() == "fetching"
        time.sleep(lease_seconds + 1)  # longer than the lease: only the heartbeat keeps it
        [busy] = background.run_sync(app, [mailbox.link.id])
        assert busy.skipped and process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        killed_at = time.monotonic()
        while background.run_sync(app, [mailbox.link.id])[0].skipped:
            assert time.monotonic() - killed_at < lease_seconds + 5, "the dead pass's lease never lapsed"
            time.sleep(0.3)
    finally:
        process.kill()
        process.wait(timeout=10)
    assert time.monotonic() - killed_at >= 1  # it was held by the dead pass until it lapsed
    run_until_done(mailbox, EngineConfig(batch_size=5))
    assert subjects() == sent


def sync_against(server: FakeImapServer, link):
    """One pass of the link against the fake server."""
    link.imap_host, link.imap_port, link.imap_security = "127.0.0.1", server.port, Security.NONE
    db.session.commit()
    policy = ConnectionPolicy(allow_plaintext=True, extra_ports=(server.port,), allowed_networks=parse_networks(LOOPBACK_NETWORKS))
    return sync_link(db.session, link, connector(StoredPasswords(SecretBox(TEST_KEY)), policy), utcnow)


@pytest.mark.parametrize("answer", ["NO [UNAVAILABLE] Temporary authentication failure. [host:2026-01-01]",
                                    "NO [SERVERBUG] Internal error occurred."])
def test_temporary_login_failure_is_an_error_with_a_retry(account, answer):
    """RFC 5530 [UNAVAILABLE] (the password backend is down): エラー with a next attempt, never 要再認証."""
    link = make_link(account[1])
    with FakeImapServer(answer) as server:
        result = sync_against(server, link)
    db.session.refresh(link)
    assert server.logins == 1
    assert result.state == link.state == LinkState.ERROR and "一時的" in result.error
    assert link.next_attempt_at > utcnow() and link.id in due_link_ids(db.session, link.next_attempt_at)


@pytest.mark.parametrize("answer", ["NO [AUTHENTICATIONFAILED] Authentication failed.", "NO Login failed.",
                                    "NO [EXPIRED] Password expired."])
def test_refused_credentials_need_reauthentication(account, answer):
    """[AUTHENTICATIONFAILED], or a NO without a code: 要再認証 and no retries."""
    link = make_link(account[1])
    with FakeImapServer(answer) as server:
        result = sync_against(server, link)
        assert result.state == LinkState.REAUTH and "ログインできません" in result.error
        assert sync_against(server, link).skipped and server.logins == 1


class ExpungeDuringFetch:
    """Wraps a client: just before the first header fetch another session deletes and expunges some messages."""

    def __init__(self, client, mailbox: Mailbox, doomed: list[int]):
        self.client, self.mailbox, self.doomed = client, mailbox, doomed

    def __getattr__(self, name):
        return getattr(self.client, name)

    def fetch_envelopes(self, first_uid, last_uid):
        """Expunge the doomed messages elsewhere once, then fetch in this session (it still has them in view)."""
        if self.doomed:
            with self.mailbox.dovecot.connect(self.mailbox.user.email, self.mailbox.user.password) as other:
                other.select_folder("INBOX")
                other.delete_messages(self.doomed)
                other.expunge()
            self.doomed = []
        return self.client.fetch_envelopes(first_uid, last_uid)


def test_messages_expunged_during_a_fetch_leave_no_trace(mailbox):
    """Gone mid-fetch: no bogus no_customer rows dated 1970; the rest comes in, and the checkpoint moves on."""
    uids = [mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject=f"件名{n}")) for n in range(6)]
    mailbox.deliver(mail("ad@else.example", mailbox.user.email, subject="広告"))
    real = connector(StoredPasswords(SecretBox(TEST_KEY)), mailbox.policy)
    result = mailbox.sync(connect=lambda link: ExpungeDuringFetch(real(link), mailbox, uids[1:5]))
    assert result.state == LinkState.ACTIVE
    assert subjects() == ["件名0", "件名5"]
    log = db.session.execute(select(ImportLogEntry.subject, ImportLogEntry.reason)).all()
    assert [tuple(row) for row in log] == [("広告", "no_customer")]
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="後から"))
    assert mailbox.sync().imported == 1 and subjects() == ["件名0", "件名5", "後から"]


def test_too_large_mail_counts_once_as_imported(app, mailbox, pki, dovecot, smtp_ssl):
    """A pass's summary: too-large mail is imported (headers only) and not also counted as 対象外."""
    configure(app, pki, dovecot, smtp_ssl, MAIL_SIZE_CAP_BYTES=2000)
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="大きな添付", body="x" * 5000))
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="小さい"))
    mailbox.deliver(mail("ad@else.example", mailbox.user.email, subject="広告"))
    output = app.test_cli_runner().invoke(args=["sync", "--link", str(mailbox.link.id)]).output
    assert "取り込み 2件（うちサイズ超過 1件） / 対象外 1件" in output


def test_a_batch_too_big_in_bytes_commits_in_parts_each_with_its_checkpoint(mailbox):
    """SYNC_BATCH_BYTES splits one UID batch: each part commits with its checkpoint, a break keeps what committed,
    and the next pass brings the rest exactly once."""
    raws = [mail(CUSTOMER, mailbox.user.email, subject=f"件名{n}", body="あ" * 1000) for n in range(5)]
    uids = [mailbox.deliver(raw) for raw in raws]
    mailbox.deliver(mail("ad@else.example", mailbox.user.email, subject="広告"))
    config = EngineConfig(batch_size=10, batch_bytes=2 * len(raws[0]) + 100)  # two of these messages per part
    real = connector(StoredPasswords(SecretBox(TEST_KEY)), mailbox.policy)
    broken = mailbox.sync(config, connect=lambda link: FailOnCall(real(link), "fetch_raw", 3))
    assert broken.state == LinkState.ERROR
    assert subjects() == ["件名0", "件名1", "件名2", "件名3"]
    inbox = next(folder for folder in mailbox.link.folders if folder.name == "INBOX")
    assert inbox.last_uid == uids[3]
    run_until_done(mailbox, config)
    assert subjects() == [f"件名{n}" for n in range(5)]
    log = db.session.execute(select(ImportLogEntry.subject, ImportLogEntry.reason)).all()
    assert [tuple(row) for row in log] == [("広告", "no_customer")]
