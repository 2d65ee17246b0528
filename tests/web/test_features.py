"""機能契約: turning メール on and off through the confirmation screens."""
from sqlalchemy import select

from portal.extensions import db
from portal.feature_contracts import is_enabled
from portal.models import AuditLog, BillingEvent, LinkState, Role
from tests.factories import enable_email, make_account, make_link, make_member

ON = "/settings/features/email/on"
OFF = "/settings/features/email/off"


def test_turning_on_needs_both_agreements(client, auth):
    """Without both ticks nothing changes and the screen says why."""
    account, owner = make_account()
    auth.login_member(owner)
    page = client.get(ON).get_data(as_text=True)
    assert "有料オプション" in page and "課金が開始" in page and "ストレージ料金" in page and "確認" in page
    response = client.post(ON, data={"agree_billing": "y"})
    assert response.status_code == 422
    assert "同意のうえチェックを入れてください" in response.get_data(as_text=True)
    assert not is_enabled(db.session, account.id)
    assert db.session.scalar(select(BillingEvent)) is None


def test_turning_on_starts_billing_and_shows_on(client, auth):
    """「確認」 with both ticks turns メール on, records a billing event and the list shows オン."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post(ON, data={"agree_billing": "y", "agree_storage": "y"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "メール機能をオンにしました。" in page
    assert "オン（課金開始）" in page and owner.user.name in page
    assert "0 バイト" in page and "0 通" in page
    assert is_enabled(db.session, account.id)
    event = db.session.scalar(select(BillingEvent))
    assert (event.feature, event.enabled, event.actor_user_id) == ("email", True, owner.user_id)
    entries = db.session.execute(select(AuditLog.action, AuditLog.actor_user_id).where(
        AuditLog.account_id == account.id, AuditLog.action.like("feature.%"))).all()
    assert [tuple(entry) for entry in entries] == [("feature.on", owner.user_id)]


def test_turning_off_unlinks_every_mailbox_of_the_account_only(client, auth):
    """Off stops billing and unlinks all links of this account; another account's links stay."""
    account, owner = make_account()
    member = make_member(account, Role.USER)
    enable_email(account, owner)
    owner_link, member_link = make_link(owner), make_link(member)
    other, other_owner = make_account()
    enable_email(other, other_owner)
    other_link = make_link(other_owner)
    auth.login_member(owner)
    assert "すべてのメールボックス連携が解除" in client.get(OFF).get_data(as_text=True)
    assert client.post(OFF, data={}).status_code == 422
    client.post(OFF, data={"agree_unlink": "y"})
    db.session.expire_all()
    assert not is_enabled(db.session, account.id)
    assert owner_link.state == member_link.state == LinkState.UNLINKED
    assert owner_link.unlink_reason.value == "feature_off"
    assert other_link.state == LinkState.ACTIVE
    events = db.session.scalars(select(BillingEvent).where(BillingEvent.account_id == account.id)).all()
    assert [e.enabled for e in events] == [True, False]


def test_turning_on_again_does_not_relink(client, auth):
    """After off and on again, members have to link again."""
    account, owner = make_account()
    enable_email(account, owner)
    link = make_link(owner)
    auth.login_member(owner)
    client.post(OFF, data={"agree_unlink": "y"})
    client.post(ON, data={"agree_billing": "y", "agree_storage": "y"})
    db.session.expire_all()
    assert link.state == LinkState.UNLINKED
    assert "接続を確認して連携する" in client.get("/settings/mailbox").get_data(as_text=True)


def test_unknown_feature_is_404(client, auth):
    """Only known features have confirmation screens."""
    account, owner = make_account()
    auth.login_member(owner)
    assert client.get("/settings/features/fax/on").status_code == 404
