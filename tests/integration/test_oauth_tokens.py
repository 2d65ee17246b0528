"""The token lifecycle of OAuth2 links against the real provider and the token-only Dovecot (IMAP + submission).

Refresh with rotation over many passes, one refresh and retry when a server refuses a token, 要再認証 after a
revocation and resuming from the checkpoint after 「再度サインインして連携」, replies over SMTP XOAUTH2, a
provider outage as エラー with backoff, automatic unlinks revoking the grant, and tokens never leaking.
"""
import logging
import time

import pytest
from sqlalchemy import func, select

from portal.background import run_sync
from portal.extensions import db
from portal.mailbox.credentials import secret_box
from portal.mailbox.oauth import token_context
from portal.models import (Account, AuditLog, Direction, LinkState, MailboxLink, MailDraft, MailMessage, Role,
                           utcnow)
from tests.factories import PASSWORD, make_customer, make_member
from tests.integration.mailbox import CUSTOMER, mail
from tests.integration.oauth_world import come_back, start


@pytest.fixture
def linked(oauth_portal, provider, oauth_mail_user):
    """Sign in and link the owner's mailbox through the real flow; returns a handle on everything."""
    def link(token_lifetime: int = 3600) -> "Linked":
        app, client, account_id, _, preset_id = oauth_portal
        provider.access_token_lifetime = token_lifetime
        with app.app_context():
            make_customer(db.session.get(Account, account_id), name="山田 太郎", email=CUSTOMER)
        response = come_back(client, provider.sign_in(start(client, preset_id), oauth_mail_user.email))
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        with app.app_context():
            link_id = db.session.scalar(select(MailboxLink.id).where(MailboxLink.state == LinkState.ACTIVE))
        return Linked(app, client, account_id, link_id, oauth_mail_user, provider)
    return link


class Linked:
    """A linked OAuth2 mailbox: deliver mail, run the scheduler's pass, read what is stored."""

    def __init__(self, app, client, account_id, link_id, user, provider):
        self.app, self.client, self.account_id, self.link_id = app, client, account_id, link_id
        self.user, self.provider = user, provider

    def deliver(self, subject: str, dovecot) -> None:
        """A customer's mail arrives in the INBOX."""
        dovecot.append(self.user.email, self.user.password, "INBOX",
                       mail(f'"山田 太郎" <{CUSTOMER}>', self.user.email, subject=subject))

    def sync(self):
        """One pass exactly as the scheduler runs it (production credentials provider and connection rules)."""
        [result] = run_sync(self.app, [self.link_id])
        return result

    def row(self) -> MailboxLink:
        """The link as stored now (detached)."""
        with self.app.app_context():
            link = db.session.get(MailboxLink, self.link_id)
            db.session.expunge(link)
            return link

    def stored_tokens(self) -> tuple[str, str]:
        """The stored access and refresh token, decrypted."""
        link, box = self.row(), secret_box(self.app.config)
        return (box.decrypt(link.oauth_access_token_encrypted, token_context(link.id, "oauth_access_token")),
                box.decrypt(link.oauth_refresh_token_encrypted, token_context(link.id, "oauth_refresh_token")))

    def subjects(self, direction: Direction = Direction.RECEIVED) -> list[str]:
        """Subjects of the stored messages, sorted (a duplicate shows twice)."""
        with self.app.app_context():
            return sorted(db.session.scalars(select(MailMessage.subject)
                                             .where(MailMessage.direction == direction)))

    def refreshes(self) -> int:
        """How many refresh requests reached the provider's token endpoint."""
        return sum(1 for r in self.provider.token_requests if r["grant_type"] == "refresh_token")


def test_short_lived_tokens_keep_passes_working_and_the_rotated_refresh_token_is_stored(
        linked, oauth_dovecot, relay_sink):
    """Tokens living 5 seconds: a minute of passes (and a reply in between) all succeed, each refreshing first."""
    box = linked(token_lifetime=5)
    _, first_refresh = box.stored_tokens()
    refreshes_before, passes, deadline = box.refreshes(), 0, time.monotonic() + 62
    while time.monotonic() < deadline:
        box.deliver(f"お問い合わせ {passes}", oauth_dovecot)
        result = box.sync()
        assert (result.state, result.error) == (LinkState.ACTIVE, None), result.error
        passes += 1
        if passes == 5:  # a reply, refreshed under the same rules, goes out over SMTP XOAUTH2
            original = _message_id(box, "お問い合わせ 0")
            response = box.client.post(f"/mails/{original}/reply", data={
                "to": CUSTOMER, "subject": "Re: お問い合わせ 0", "body": "ありがとうございます。", "action": "send"})
            assert response.status_code == 302, response.get_data(as_text=True)[:800]
        time.sleep(2.5)  # the access token of the pass before is dead by now
    assert passes >= 15
    assert box.subjects() == sorted(f"お問い合わせ {n}" for n in range(passes))  # every one, exactly once
    assert box.refreshes() - refreshes_before >= passes  # nothing logged in with a dead token
    access, refresh = box.stored_tokens()
    assert refresh != first_refresh
    assert box.provider.live_refresh_tokens(box.user.email) == [refresh]  # the rotated one is what is kept
    assert not box.provider.token_record(access).is_expired()
    assert any(CUSTOMER in message.rcpt_tos and b"Re: " in message.data for message in relay_sink.messages)


def test_a_long_lived_token_is_used_without_refreshing(linked, oauth_dovecot):
    """An access token far from expiry is used as it is: passes do not call the provider."""
    box = linked()
    before = box.refreshes()
    for n in range(3):
        box.deliver(f"見積り {n}", oauth_dovecot)
        assert box.sync().error is None
    assert box.refreshes() == before and box.subjects() == ["見積り 0", "見積り 1", "見積り 2"]


def test_a_token_refused_by_imap_gets_one_refresh_and_the_pass_goes_on(linked, oauth_dovecot):
    """The server refuses a token that looked fresh (revoked early): one refresh, one new login, no 要再認証."""
    box = linked()
    access, _ = box.stored_tokens()
    box.provider.token_record(access).access_revoked = True
    oauth_dovecot.flush_auth_cache()
    box.deliver("至急のご相談", oauth_dovecot)
    before = box.refreshes()
    result = box.sync()
    assert (result.state, result.error, result.imported) == (LinkState.ACTIVE, None, 1)
    assert box.refreshes() == before + 1 and box.stored_tokens()[0] != access


def test_revocation_needs_reauthentication_and_reconsent_resumes_without_gap_or_duplicate(
        linked, oauth_dovecot, caplog):
    """Revoked at the provider: 要再認証; 「再度サインインして連携」 resumes from the checkpoint, every mail once."""
    caplog.set_level(logging.DEBUG)
    box = linked()
    box.deliver("1通目", oauth_dovecot)
    assert box.sync().imported == 1
    revoked = box.stored_tokens()
    box.provider.revoke_user(box.user.email)
    oauth_dovecot.flush_auth_cache()
    box.deliver("2通目（取り消しの後）", oauth_dovecot)

    result = box.sync()
    assert result.state == LinkState.REAUTH and "再度サインインして連携" in result.error
    assert box.row().next_attempt_at is None and box.sync().skipped  # no retries until the member acts
    page = box.client.get("/settings/mailbox")
    assert "要再認証" in page.get_data(as_text=True) and "再度サインインして連携" in page.get_data(as_text=True)
    # 「再度サインインして連携」 is a form post that ends at the provider: the page's CSP must allow it.
    assert f"form-action 'self' {box.provider.issuer};" in page.headers["Content-Security-Policy"]

    # The password form is not for an OAuth2 link.
    refused = box.client.post("/settings/mailbox/reauth", data={"imap_password": "x", "smtp_password": ""})
    assert refused.status_code == 409 and "パスワードは使いません" in refused.get_data(as_text=True)
    assert box.row().state == LinkState.REAUTH

    box.deliver("3通目（再サインインの前）", oauth_dovecot)
    response = come_back(box.client, box.provider.sign_in(start(box.client), box.user.email))
    assert response.status_code == 302
    assert "前回の続きから" in box.client.get("/settings/mailbox").get_data(as_text=True)
    link = box.row()
    assert (link.state, link.failure_count, link.last_error) == (LinkState.ACTIVE, 0, None)

    box.deliver("4通目（再サインインの後）", oauth_dovecot)
    result = box.sync()
    assert (result.state, result.imported) == (LinkState.ACTIVE, 3)
    assert box.subjects() == sorted(["1通目", "2通目（取り消しの後）", "3通目（再サインインの前）", "4通目（再サインインの後）"])
    assert box.sync().imported == 0
    _, refresh = box.stored_tokens()
    assert box.provider.live_refresh_tokens(box.user.email) == [refresh]
    assert_no_token_in(box, caplog, [page.get_data(as_text=True), refused.get_data(as_text=True),
                                     box.client.get("/settings/mailbox").get_data(as_text=True),
                                     box.client.get("/settings/audit").get_data(as_text=True),
                                     box.client.get(f"/settings/mailbox/links/{box.link_id}").get_data(as_text=True)],
                       extra=revoked)


def test_a_provider_outage_is_an_error_with_a_next_attempt(linked, oauth_dovecot):
    """The token endpoint answers 5xx: エラー with backoff, tokens kept; the next pass works again."""
    box = linked(token_lifetime=5)
    tokens = box.stored_tokens()
    box.provider.token_errors.append((503, "temporarily_unavailable"))
    box.deliver("障害中のメール", oauth_dovecot)
    result = box.sync()
    link = box.row()
    assert result.state == LinkState.ERROR and "認証サーバー" in result.error
    assert link.next_attempt_at is not None and link.next_attempt_at > utcnow()
    assert box.stored_tokens() == tokens  # nothing was spent
    box.provider.token_errors.append((500, "server_error"))
    assert box.sync().state == LinkState.ERROR and box.row().failure_count == 2
    result = box.sync()
    assert (result.state, result.imported) == (LinkState.ACTIVE, 1)
    assert box.row().failure_count == 0


def test_reply_after_a_revocation_keeps_the_draft_and_asks_for_sign_in(linked, oauth_dovecot, relay_sink, caplog):
    """SMTP refuses the revoked token, the refresh is refused too: the draft is kept, the link is 要再認証."""
    caplog.set_level(logging.DEBUG)
    box = linked()
    box.deliver("ご質問", oauth_dovecot)
    box.sync()
    original = _message_id(box, "ご質問")
    revoked = box.stored_tokens()
    box.provider.revoke_user(box.user.email)
    oauth_dovecot.flush_auth_cache()
    sink_before = len(relay_sink.messages)
    response = box.client.post(f"/mails/{original}/reply", data={
        "to": CUSTOMER, "subject": "Re: ご質問", "body": "回答します。", "action": "send"})
    page = response.get_data(as_text=True)
    assert response.status_code == 502 and "下書きとして保存しました" in page and "再度サインインして連携" in page
    assert len(relay_sink.messages) == sink_before
    with box.app.app_context():
        [draft] = db.session.scalars(select(MailDraft)).all()
        assert draft.body == "回答します。" and "再度サインイン" in draft.last_error
        assert db.session.scalar(select(func.count(MailMessage.id)).where(
            MailMessage.direction == Direction.SENT)) == 0
    assert box.row().state == LinkState.REAUTH
    assert_no_token_in(box, caplog, [page, box.client.get(f"/mails/{original}/reply").get_data(as_text=True)],
                       extra=revoked)


def test_reply_refreshes_a_refused_token_once_and_lands_in_sent_once(linked, oauth_dovecot, relay_sink):
    """A token SMTP refuses gets one refresh and one retry; the reply reaches the sink and Sent exactly once."""
    box = linked()
    box.deliver("資料のお願い", oauth_dovecot)
    box.sync()
    original = _message_id(box, "資料のお願い")
    access, _ = box.stored_tokens()
    box.provider.token_record(access).access_revoked = True  # dead before its time: SMTP answers 535
    oauth_dovecot.flush_auth_cache()
    response = box.client.post(f"/mails/{original}/reply", data={
        "to": CUSTOMER, "subject": "Re: 資料のお願い", "body": "資料をお送りします。", "action": "send"})
    assert response.status_code == 302, response.get_data(as_text=True)[:800]
    with box.app.app_context():
        sent = db.session.scalar(select(MailMessage).where(MailMessage.direction == Direction.SENT))
        message_id = sent.message_id_header
    assert [m for m in relay_sink.messages if message_id.encode() in m.data]
    with oauth_dovecot.connect(box.user.email, box.user.password) as imap:
        sent_folder = next(name for flags, _, name in imap.list_folders() if b"\\Sent" in flags)
        imap.select_folder(sent_folder, readonly=True)
        assert len(imap.search(["HEADER", "Message-ID", message_id])) == 1
    assert box.sync().error is None
    assert box.subjects(Direction.SENT) == ["Re: 資料のお願い"]  # the Sent copy is not imported twice


def test_disabling_a_member_revokes_the_grant_and_wipes_the_tokens(oauth_portal, provider, oauth_mail_user):
    """An automatic unlink (the owner disables the member) revokes the refresh token at the provider."""
    app, owner_client, account_id, _, preset_id = oauth_portal
    with app.app_context():
        member = make_member(db.session.get(Account, account_id), Role.USER)
        member_id, email = member.id, member.user.email
    client = app.test_client()
    client.post("/login", data={"email": email, "password": PASSWORD})
    assert come_back(client, provider.sign_in(start(client, preset_id), oauth_mail_user.email)).status_code == 302
    assert len(provider.live_refresh_tokens(oauth_mail_user.email)) == 1
    assert owner_client.post(f"/settings/users/{member_id}/disable").status_code == 302
    deadline = time.monotonic() + 10
    while provider.live_refresh_tokens(oauth_mail_user.email) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider.live_refresh_tokens(oauth_mail_user.email) == []
    with app.app_context():
        link = db.session.scalar(select(MailboxLink))
        assert (link.state, link.unlink_reason.value) == (LinkState.UNLINKED, "member_disabled")
        assert (link.oauth_access_token_encrypted, link.oauth_refresh_token_encrypted) == ("", "")
        assert link.oauth_expires_at is None


def _message_id(box: Linked, subject: str) -> int:
    """The stored message with this subject."""
    with box.app.app_context():
        return db.session.scalar(select(MailMessage.id).where(MailMessage.subject == subject))


def assert_no_token_in(box: Linked, caplog, pages: list[str], extra=()) -> None:
    """No token the provider ever issued to the user appears in the portal's logs, audit log or pages."""
    with box.provider.lock:
        secrets_issued = {t for record in box.provider.tokens if record.user.email == box.user.email
                          for t in (record.access_token, record.refresh_token) if t}
    secrets_issued |= set(extra)
    assert len(secrets_issued) >= 2
    # The test provider runs in this process: its own server-side records are not the portal's.
    portal_logs = "\n".join(record.getMessage() for record in caplog.records
                            if not record.name.startswith(("authlib.oauth2.rfc", "werkzeug")))
    with box.app.app_context():
        audit = "\n".join(repr(entry.__dict__) for entry in db.session.scalars(select(AuditLog)))
    for token in secrets_issued:
        assert token not in portal_logs
        assert token not in audit
        for page in pages:
            assert token not in page
