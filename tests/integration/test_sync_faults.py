"""Faults from the outside against a real Dovecot (issue 14): interrupted re-baselines, expunges mid-fetch, leases."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.mailbox.credentials import StoredPasswords
from portal.mailsync.engine import EngineConfig
from portal.mailsync.runner import connector
from portal.models import Customer, LinkState, MailMessage
from portal.secretbox import SecretBox
from tests.factories import TEST_KEY
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
