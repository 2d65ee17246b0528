"""ユーザー管理: adding, role changes, disabling, deleting, and the last-owner rule."""
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditLog, Membership, MembershipState, Role
from tests.factories import PASSWORD, make_account, make_customer, make_member

LAST_OWNER = "最後のオーナーは変更・無効化・削除できません。"
OWNERS_ONLY = "オーナーの追加・変更はオーナーのみが行えます。"


def new_member(email="newcomer@example.jp", role="user", name="新人 太郎"):
    """Invite-member form data (no password: the person sets their own through the link)."""
    return {"email": email, "name": name, "role": role}


def reload(membership: Membership) -> Membership:
    """Read the membership again from the database."""
    db.session.expire_all()
    return db.session.get(Membership, membership.id)


def test_invited_member_can_sign_in(make_app):
    """An owner invites a member; the member sets a password through the link and then signs in with it."""
    app = make_app()
    owner_client, newcomer_client = app.test_client(), app.test_client()
    with app.app_context():
        account, owner = make_account()
        owner_email = owner.user.email
    owner_client.post("/login", data={"email": owner_email, "password": PASSWORD})
    response = owner_client.post("/settings/users/new", data=new_member(email=" NewComer@Example.JP "))
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "を招待しました。" in page and "newcomer@example.jp" in page
    link = BeautifulSoup(page, "html.parser").find(id="one-time-link")["value"]
    path = "/" + link.split("/", 3)[3]
    joined = newcomer_client.post(path, data={"password": "initial-pass-1", "password_confirm": "initial-pass-1"})
    assert joined.status_code == 302
    newcomer_client.post("/logout")
    login = newcomer_client.post("/login", data={"email": "newcomer@example.jp", "password": "initial-pass-1"})
    assert login.status_code == 302
    assert newcomer_client.get("/settings/users").status_code == 403  # a plain user


def test_duplicate_member_is_a_form_error(client, auth):
    """An address that is already a member of this account is refused beside the field."""
    account, owner = make_account()
    member = make_member(account, Role.USER)
    auth.login_member(owner)
    duplicate = client.post("/settings/users/new", data=new_member(email=member.user.email))
    assert duplicate.status_code == 422
    assert "すでに登録されています" in duplicate.get_data(as_text=True)


def test_unknown_role_is_refused(client, auth):
    """A tampered role value is a Japanese form error."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post("/settings/users/new", data=new_member(role="superuser"))
    assert response.status_code == 422
    assert "権限を選択してください。" in response.get_data(as_text=True)


def test_admin_cannot_create_or_touch_owners(client, auth):
    """Only owners grant or change the owner role."""
    account, owner = make_account()
    admin = make_member(account, Role.ADMIN)
    auth.login_member(admin)
    response = client.post("/settings/users/new", data=new_member(role="owner"))
    assert response.status_code == 422 and OWNERS_ONLY in response.get_data(as_text=True)
    client.post(f"/settings/users/{owner.id}/role", data={"role": "user"})
    assert reload(owner).role == Role.OWNER
    page = client.post(f"/settings/users/{owner.id}/disable", follow_redirects=True).get_data(as_text=True)
    assert OWNERS_ONLY in page and reload(owner).state == MembershipState.ACTIVE


def test_last_owner_cannot_be_demoted(client, auth):
    """The account always keeps an active owner."""
    account, owner = make_account()
    auth.login_member(owner)
    page = client.post(f"/settings/users/{owner.id}/role", data={"role": "admin"},
                       follow_redirects=True).get_data(as_text=True)
    assert LAST_OWNER in page
    assert reload(owner).role == Role.OWNER


def test_an_owner_can_step_down_when_another_owner_exists(client, auth):
    """With a second active owner, demoting the first is fine; a disabled second owner does not count."""
    account, owner = make_account()
    second = make_member(account, Role.OWNER, state=MembershipState.DISABLED)
    auth.login_member(owner)
    client.post(f"/settings/users/{owner.id}/role", data={"role": "admin"})
    assert reload(owner).role == Role.OWNER
    client.post(f"/settings/users/{second.id}/enable")
    client.post(f"/settings/users/{owner.id}/role", data={"role": "admin"})
    assert reload(owner).role == Role.ADMIN
    audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "member.role"))
    assert audit.details == {"before": "owner", "after": "admin"}


def test_disable_and_enable(client, auth):
    """Disable asks first, then takes effect; enabling lets the member in again."""
    account, owner = make_account()
    member = make_member(account, Role.USER)
    auth.login_member(owner)
    assert "はい、無効化します" in client.get(f"/settings/users/{member.id}/disable").get_data(as_text=True)
    assert reload(member).state == MembershipState.ACTIVE
    client.post(f"/settings/users/{member.id}/disable")
    assert reload(member).state == MembershipState.DISABLED
    client.post(f"/settings/users/{member.id}/enable")
    assert reload(member).state == MembershipState.ACTIVE


def test_nobody_disables_or_deletes_themselves(client, auth):
    """Self-lockout is refused with a message."""
    account, owner = make_account()
    make_member(account, Role.OWNER)
    auth.login_member(owner)
    page = client.post(f"/settings/users/{owner.id}/disable", follow_redirects=True).get_data(as_text=True)
    assert "自分自身を無効化することはできません。" in page
    page = client.post(f"/settings/users/{owner.id}/delete", follow_redirects=True).get_data(as_text=True)
    assert "自分自身を削除することはできません。" in page
    assert reload(owner).state == MembershipState.ACTIVE


def test_delete_unassigns_customers_and_hides_member(client, auth):
    """A deleted member disappears from the list and their customers have no 担当者."""
    account, owner = make_account()
    member = make_member(account, Role.USER, email="leaver@example.jp")
    customer = make_customer(account, assigned=member)
    auth.login_member(owner)
    assert "はい、削除します" in client.get(f"/settings/users/{member.id}/delete").get_data(as_text=True)
    client.post(f"/settings/users/{member.id}/delete")
    assert "leaver@example.jp" not in client.get("/settings/users").get_data(as_text=True)
    db.session.expire_all()
    assert customer.assigned_membership_id is None
    auth.logout()
    assert auth.login("leaver@example.jp").status_code == 401
