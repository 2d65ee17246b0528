"""Connections kept between passes (issue 13 item 2) against the real Dovecot: reused while healthy, re-opened
after the server dropped them, nothing lost or stored twice."""
import time

from sqlalchemy import select

from portal import background
from portal.extensions import db
from portal.mailbox.services import unlink_member_link
from portal.models import MailboxLink, MailMessage, utcnow
from tests.integration.mailbox import CUSTOMER, mail


def subjects() -> list[str]:
    """Subjects of every stored message, sorted (a duplicate shows twice)."""
    db.session.expire_all()
    return sorted(db.session.scalars(select(MailMessage.subject)))


def pooled_client(app, link_id):
    """The connection the app's pool keeps for the link (None when it keeps none)."""
    pool = background.connection_pool(app)
    idle = pool._idle.get(link_id)
    return idle.client if idle else None


def test_a_kept_connection_is_reused_and_reopened_after_the_server_drops_it(app, mailbox, pki, dovecot, smtp_ssl):
    """Pass 1 logs in and keeps the connection; pass 2 uses it again (no login); the server kicks the session; pass 3
    finds it dead at its first command, logs in afresh and imports the new mail once; the old mail stays single."""
    app.config.update(MAIL_CA_FILE=str(pki.ca_file), MAIL_EXTRA_PORTS=[dovecot.imaps_port, smtp_ssl.port])
    link_id = mailbox.link.id
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="一通目"))
    [first] = background.run_sync(app, [link_id])
    assert first.imported == 1 and first.error is None
    kept = pooled_client(app, link_id)
    assert kept is not None
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="二通目"))
    [second] = background.run_sync(app, [link_id])
    assert second.imported == 1 and pooled_client(app, link_id) is kept  # the same session, no new login
    dovecot.kick(mailbox.user.email)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the kicked imap process goes away
        try:
            kept.noop()
        except Exception:  # noqa: BLE001 - any failure means the session is gone, which is the point
            break
        time.sleep(0.1)
    else:
        raise AssertionError("doveadm kick left the session open")
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="三通目"))
    [third] = background.run_sync(app, [link_id])
    assert third.error is None and third.imported == 1
    replacement = pooled_client(app, link_id)
    assert replacement is not None and replacement is not kept
    [fourth] = background.run_sync(app, [link_id])
    assert fourth.imported == 0 and pooled_client(app, link_id) is replacement
    assert subjects() == ["一通目", "三通目", "二通目"]


def test_the_next_round_closes_the_connection_of_an_unlinked_mailbox(app, mailbox, pki, dovecot, smtp_ssl):
    """The scheduler's round keeps connections only for links that still sync: unlinking closes the session."""
    app.config.update(MAIL_CA_FILE=str(pki.ca_file), MAIL_EXTRA_PORTS=[dovecot.imaps_port, smtp_ssl.port])
    link_id = mailbox.link.id
    background.run_sync(app)
    kept = pooled_client(app, link_id)
    assert kept is not None
    unlink_member_link(db.session, mailbox.member, db.session.get(MailboxLink, link_id), utcnow())
    assert background.run_sync(app) == []
    assert pooled_client(app, link_id) is None and background.connection_pool(app).open_count == 0
    try:
        kept.noop()
    except Exception:  # noqa: BLE001 - closed, as it should be
        return
    raise AssertionError("the unlinked mailbox's session is still open")
