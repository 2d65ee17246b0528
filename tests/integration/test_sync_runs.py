"""Running passes: which links are due, leases, the CLI, 「今すぐ同期」, re-entering a password, the scheduler job."""
from datetime import timedelta

from sqlalchemy import select

import scheduler
from portal.extensions import db
from portal.features.services import set_feature
from portal.mailsync.engine import claim_lease, release_lease
from portal.mailsync.runner import due_link_ids
from portal.models import AccountStatus, LinkState, MailMessage, utcnow
from portal.models import Role
from tests.factories import enable_email, make_account, make_customer, make_link, make_member
from tests.integration.mailbox import CUSTOMER, Mailbox, mail


def test_due_links_skip_backoff_reauth_disabled_accounts_and_feature_off(app):
    """Only links that may run now are picked up."""
    account, owner = make_account()
    enable_email(account, owner)
    due = make_link(owner)
    waiting_account, waiting_owner = make_account()
    enable_email(waiting_account, waiting_owner)
    waiting = make_link(waiting_owner)
    waiting.state, waiting.next_attempt_at = LinkState.ERROR, utcnow() + timedelta(minutes=5)
    reauth_account, reauth_owner = make_account()
    enable_email(reauth_account, reauth_owner)
    make_link(reauth_owner).state = LinkState.REAUTH
    stopped_account, stopped_owner = make_account()
    enable_email(stopped_account, stopped_owner)
    make_link(stopped_owner)
    stopped_account.status = AccountStatus.DISABLED
    db.session.commit()
    assert due_link_ids(db.session, utcnow()) == [due.id]
    assert waiting.id in due_link_ids(db.session, utcnow() + timedelta(minutes=6))
    set_feature(db.session, owner, "email", False, utcnow())
    assert due.id not in due_link_ids(db.session, utcnow())


def test_lease_keeps_a_second_process_out_until_it_expires(app):
    """Two processes cannot sync one link at once; a dead holder's lease expires."""
    account, owner = make_account()
    enable_email(account, owner)
    link = make_link(owner)
    now = utcnow()
    assert claim_lease(db.session, link.id, "host:1", now, 60)
    assert not claim_lease(db.session, link.id, "host:2", now, 60)
    assert claim_lease(db.session, link.id, "host:2", now + timedelta(seconds=61), 60)
    release_lease(db.session, link.id, "host:2")
    assert claim_lease(db.session, link.id, "host:1", now, 60)


def linked_mailbox(app, dovecot, pki, mail_user, smtp_ssl):
    """An owner with メール on, the customer, and a real link; returns (mailbox, owner)."""
    account, owner = make_account()
    enable_email(account, owner)
    make_customer(account, email=CUSTOMER)
    return Mailbox(dovecot, pki, mail_user, owner, smtp_ssl), owner


def configure(app, pki, dovecot, smtp_ssl):
    """Let the app reach the test servers."""
    app.config.update(MAIL_CA_FILE=str(pki.ca_file), MAIL_EXTRA_PORTS=[dovecot.imaps_port, smtp_ssl.port])


def test_cli_sync_prints_per_link_results(app, dovecot, pki, mail_user, smtp_ssl):
    """`flask sync` runs a pass now and says what it did per link."""
    configure(app, pki, dovecot, smtp_ssl)
    box, _ = linked_mailbox(app, dovecot, pki, mail_user, smtp_ssl)
    box.deliver(mail(CUSTOMER, mail_user.email, subject="CLIで取り込み"))
    result = app.test_cli_runner().invoke(args=["sync", "--link", str(box.link.id)])
    assert result.exit_code == 0, result.output
    assert f"連携 {box.link.id}: 取り込み 1件" in result.output
    assert db.session.scalar(select(MailMessage.subject)) == "CLIで取り込み"


def test_sync_now_button_imports_and_the_log_explains_exclusions(app, client, auth, dovecot, pki, mail_user,
                                                                 smtp_ssl):
    """「今すぐ同期」 brings mail in at once; the link screen says why other mail stayed out."""
    configure(app, pki, dovecot, smtp_ssl)
    box, owner = linked_mailbox(app, dovecot, pki, mail_user, smtp_ssl)
    box.deliver(mail(CUSTOMER, mail_user.email, subject="今すぐ"))
    box.deliver(mail("ad@else.example", mail_user.email, subject="メルマガ"))
    auth.login_member(owner)
    page = client.post("/settings/mailbox/sync", follow_redirects=True).get_data(as_text=True)
    assert "新しく取り込んだメール: 1件" in page
    assert "メルマガ" in page and "From・To に登録済みの顧客のアドレスがありません" in page
    assert "最終同期" in page and "まだ同期していません" not in page


def test_reauth_resumes_from_the_checkpoint(app, client, auth, dovecot, pki, mail_user, smtp_ssl):
    """After 要再認証, entering the new password is verified, and mail that arrived meanwhile comes in."""
    configure(app, pki, dovecot, smtp_ssl)
    box, owner = linked_mailbox(app, dovecot, pki, mail_user, smtp_ssl)
    dovecot.add_user(mail_user.email, "new-password-1")
    smtp_ssl.add_user(mail_user.email, "new-password-1")
    assert box.sync().state == LinkState.REAUTH
    dovecot.append(mail_user.email, "new-password-1", "INBOX", mail(CUSTOMER, mail_user.email, subject="再認証中に届いた"))
    auth.login_member(owner)
    assert "パスワードを入力し直してください" in client.get("/settings/mailbox").get_data(as_text=True)
    wrong = client.post("/settings/mailbox/reauth", data={"imap_password": "still-wrong"})
    assert wrong.status_code == 422 and "ログインできません" in wrong.get_data(as_text=True)
    assert client.post("/settings/mailbox/reauth", data={"imap_password": "new-password-1"}).status_code == 302
    db.session.expire_all()
    assert box.link.state == LinkState.ACTIVE
    box.sync()
    assert db.session.scalar(select(MailMessage.subject)) == "再認証中に届いた"


def test_scheduler_job_syncs_every_due_link(app, dovecot, pki, mail_user, smtp_ssl):
    """The 3-minute job passes over due links in a pool and imports their new mail."""
    configure(app, pki, dovecot, smtp_ssl)
    box, _ = linked_mailbox(app, dovecot, pki, mail_user, smtp_ssl)
    box.deliver(mail(CUSTOMER, mail_user.email, subject="定期取り込み"))
    assert scheduler.sync_job(app) == 1
    db.session.expire_all()
    assert db.session.scalar(select(MailMessage.subject)) == "定期取り込み"



def test_admin_sees_each_members_link_and_why_mail_stayed_out(app, client, auth, dovecot, pki, mail_user,
                                                              smtp_ssl):
    """Owners and admins answer 「なぜ取り込まれないのか」 for any member from the link list."""
    configure(app, pki, dovecot, smtp_ssl)
    account, owner = make_account()
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    box = Mailbox(dovecot, pki, mail_user, member, smtp_ssl)
    box.deliver(mail("colleague@else.example", mail_user.email, cc=CUSTOMER, subject="Ccだけの案内"))
    make_customer(account, email=CUSTOMER)
    box.deliver(mail("colleague@else.example", mail_user.email, cc=CUSTOMER, subject="Ccだけの案内2"))
    box.sync()
    auth.login_member(owner)
    listing = client.get("/settings/mailbox/links").get_data(as_text=True)
    assert member.user.name in listing and "連携中" in listing
    detail = client.get(f"/settings/mailbox/links/{box.link.id}").get_data(as_text=True)
    assert "Ccだけの案内2" in detail and "顧客のアドレスが Cc/Bcc にしかありません" in detail
