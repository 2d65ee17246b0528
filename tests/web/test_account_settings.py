"""アカウント設定: only an owner disables or cancels the whole account."""
import pytest

from portal.extensions import db
from portal.models import Account, AccountStatus, Role
from tests.factories import make_account, make_member


@pytest.mark.parametrize("change", ["disable", "cancel"])
def test_an_admin_cannot_close_the_account(client, auth, change):
    """An admin is refused (403) on the confirmation and the POST; the account and the owner keep working."""
    account, owner = make_account()
    admin = make_member(account, Role.ADMIN)
    auth.login_member(admin)
    assert client.get(f"/settings/account/{change}").status_code == 403
    refused = client.post(f"/settings/account/{change}")
    assert refused.status_code == 403
    assert "オーナーのみが行えます" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Account, account.id).status == AccountStatus.ACTIVE
    assert client.get("/settings/account").status_code == 200  # the admin is still signed in


@pytest.mark.parametrize("role,offered", [(Role.OWNER, True), (Role.ADMIN, False)])
def test_close_buttons_are_offered_to_owners_only(client, auth, role, offered):
    """The admin's account page says who may close the account instead of offering buttons that fail."""
    account, owner = make_account()
    member = owner if role == Role.OWNER else make_member(account, role)
    auth.login_member(member)
    page = client.get("/settings/account").get_data(as_text=True)
    assert ("/settings/account/cancel" in page) == offered
    assert ("/settings/account/disable" in page) == offered
    assert ("無効化・解約はオーナーのみが行えます" in page) != offered
    hub = client.get("/settings").get_data(as_text=True)
    assert ("無効化・解約もここで行います" in hub) == offered
