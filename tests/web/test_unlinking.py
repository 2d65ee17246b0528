"""Unlinking by the member and automatically: exactly the right links stop, nothing imported is lost."""
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from portal.extensions import db
from portal.mailbox.credentials import link_passwords, secret_box
from portal.mailbox.oauth import store_tokens, token_context
from portal.models import (AccountStatus, AuditLog, AuthMethod, LinkState, MailboxFolder, MailboxLink, Role,
                           UnlinkReason, utcnow)
from portal.oauth.client import TokenSet
from portal.secretbox import SecretBox, SecretBoxError
from tests.factories import TEST_KEY, enable_email, make_account, make_link, make_member


def state(link: MailboxLink) -> tuple:
    """A link's state and reason, read fresh."""
    db.session.expire_all()
    return link.state, link.unlink_reason


def setup_two_members():
    """An account with メール on and two linked members, plus another account with a link."""
    account, owner = make_account()
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    other, other_owner = make_account()
    enable_email(other, other_owner)
    return account, owner, member, make_link(owner), make_link(member), make_link(other_owner)


def test_member_unlinks_after_confirmation_and_can_link_again(client, auth, app):
    """GET asks, POST unlinks; the folders stay; the screen offers linking again and says why it stopped."""
    account, owner = make_account()
    enable_email(account, owner)
    link = make_link(owner)
    auth.login_member(owner)
    status = client.get("/settings/mailbox").get_data(as_text=True)
    assert "連携中" in status and "連携を解除" in status
    assert "はい、解除します" in client.get("/settings/mailbox/unlink").get_data(as_text=True)
    assert state(link) == (LinkState.ACTIVE, None)
    client.post("/settings/mailbox/unlink")
    assert state(link) == (LinkState.UNLINKED, UnlinkReason.BY_MEMBER)
    assert db.session.scalar(select(func.count(MailboxFolder.id)).where(MailboxFolder.link_id == link.id)) == 2
    page = client.get("/settings/mailbox").get_data(as_text=True)
    assert "接続を確認して連携する" in page and "本人が連携を解除しました" in page
    assert link.imap_password_encrypted == ""  # a stopped link keeps no password
    again = make_link(owner)
    assert again.id != link.id and state(again)[0] == LinkState.ACTIVE


def test_disabling_a_member_unlinks_only_their_link(client, auth):
    """The disabled member's link stops; colleagues and other accounts keep theirs; re-enabling does not relink."""
    account, owner, member, owner_link, member_link, other_link = setup_two_members()
    auth.login_member(owner)
    client.post(f"/settings/users/{member.id}/disable")
    assert state(member_link) == (LinkState.UNLINKED, UnlinkReason.MEMBER_DISABLED)
    assert state(owner_link)[0] == state(other_link)[0] == LinkState.ACTIVE
    client.post(f"/settings/users/{member.id}/enable")
    assert state(member_link)[0] == LinkState.UNLINKED


def test_deleting_a_member_unlinks_their_link(client, auth):
    """Deletion records its own reason."""
    account, owner, member, owner_link, member_link, other_link = setup_two_members()
    auth.login_member(owner)
    client.post(f"/settings/users/{member.id}/delete")
    assert state(member_link) == (LinkState.UNLINKED, UnlinkReason.MEMBER_DELETED)
    assert state(owner_link)[0] == LinkState.ACTIVE


def test_disabling_the_account_unlinks_all_its_links_and_signs_out(client, auth):
    """Account disabled: every link of it stops, the other account is untouched, the session ends."""
    account, owner, member, owner_link, member_link, other_link = setup_two_members()
    auth.login_member(owner)
    assert "はい、無効化します" in client.get("/settings/account/disable").get_data(as_text=True)
    client.post("/settings/account/disable")
    assert state(owner_link) == state(member_link) == (LinkState.UNLINKED, UnlinkReason.ACCOUNT_DISABLED)
    assert state(other_link)[0] == LinkState.ACTIVE
    assert db.session.get(type(account), account.id).status == AccountStatus.DISABLED
    assert client.get("/").headers["Location"].startswith("/login")


def test_cancelling_the_account_unlinks_with_its_reason(client, auth):
    """Account cancelled: links stop with the cancellation reason."""
    account, owner, member, owner_link, member_link, other_link = setup_two_members()
    auth.login_member(owner)
    client.post("/settings/account/cancel")
    assert state(member_link) == (LinkState.UNLINKED, UnlinkReason.ACCOUNT_CANCELLED)
    assert state(other_link)[0] == LinkState.ACTIVE


def test_reactivating_an_account_from_the_cli_does_not_relink(app):
    """The operator re-activates a disabled account; members sign in again but must link again."""
    account, owner, member, owner_link, member_link, other_link = setup_two_members()
    runner = app.test_cli_runner()
    runner.invoke(args=["set-account-status", "--account", str(account.id), "--status", "disabled"])
    result = runner.invoke(args=["set-account-status", "--account", str(account.id), "--status", "active"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert db.session.get(type(account), account.id).status == AccountStatus.ACTIVE
    assert state(owner_link)[0] == LinkState.UNLINKED


def test_every_unlink_is_audited(client, auth):
    """Each stopped link writes an audit entry with its reason."""
    account, owner, member, owner_link, member_link, other_link = setup_two_members()
    auth.login_member(owner)
    client.post("/settings/account/cancel")
    reasons = db.session.scalars(select(AuditLog.details).where(AuditLog.action == "mailbox.unlink")).all()
    assert sorted(r["reason"] for r in reasons) == ["account_cancelled", "account_cancelled"]


def test_passwords_are_encrypted_and_bound_to_their_row(app):
    """No clear password in the row; copying a ciphertext to another link's row does not decrypt."""
    account, owner, member, owner_link, member_link, other_link = setup_two_members()
    box = secret_box(app.config)
    row = db.session.execute(select(MailboxLink.__table__).where(MailboxLink.id == owner_link.id)).one()
    assert "imap-secret" not in str(tuple(row))
    assert link_passwords(owner_link, box) == ("imap-secret", "smtp-imap-secret")
    member_link.imap_password_encrypted = owner_link.imap_password_encrypted
    db.session.commit()
    with pytest.raises(SecretBoxError):
        link_passwords(member_link, box)


def test_rotate_key_command_reencrypts_with_the_new_key(make_app):
    """After rotation the links decrypt with the new key alone."""
    new_key = Fernet.generate_key().decode()
    app = make_app(MAILBOX_ENCRYPTION_KEY=new_key, MAILBOX_ENCRYPTION_OLD_KEYS=[TEST_KEY])
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        link = make_link(owner)
        result = app.test_cli_runner().invoke(args=["rotate-mailbox-key"])
        assert "1件" in result.output
        db.session.expire_all()
        assert link_passwords(link, SecretBox(new_key)) == ("imap-secret", "smtp-imap-secret")


def test_rotate_key_command_reencrypts_oauth_tokens(make_app):
    """An OAuth2 link's access and refresh tokens decrypt with the new key alone after rotation (else dropping
    the old key would strand every OAuth2 link in 要再認証)."""
    new_key = Fernet.generate_key().decode()
    app = make_app(MAILBOX_ENCRYPTION_KEY=new_key, MAILBOX_ENCRYPTION_OLD_KEYS=[TEST_KEY])
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        link = make_link(owner)
        link.auth_method, link.imap_password_encrypted, link.smtp_password_encrypted = AuthMethod.OAUTH2, "", ""
        store_tokens(link, TokenSet("access-secret", "refresh-secret", utcnow(), "mail"), SecretBox(TEST_KEY))
        db.session.commit()
        result = app.test_cli_runner().invoke(args=["rotate-mailbox-key"])
        assert "1件のメールボックス連携のパスワード・OAuth2トークン" in result.output, result.output
        db.session.expire_all()
        box = SecretBox(new_key)
        assert box.decrypt(link.oauth_access_token_encrypted,
                           token_context(link.id, "oauth_access_token")) == "access-secret"
        assert box.decrypt(link.oauth_refresh_token_encrypted,
                           token_context(link.id, "oauth_refresh_token")) == "refresh-secret"
        # A second run finds nothing left on the old key.
        assert "0件のメールボックス連携" in app.test_cli_runner().invoke(args=["rotate-mailbox-key"]).output


def test_group_address_links_for_several_members_and_accounts(app):
    """info@ may be linked by two members of one account and by a member of another account."""
    account, owner = make_account()
    enable_email(account, owner)
    other, other_owner = make_account()
    enable_email(other, other_owner)
    members = [owner, make_member(account, Role.MANAGER), other_owner]
    links = [make_link(member, "info@shared.example.jp") for member in members]
    assert [state(link)[0] for link in links] == [LinkState.ACTIVE] * 3
