"""ユーザー管理: adding, role changes, disabling, deleting, and the last-owner rule."""
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditLog, Membership, MembershipState, Role, User
from tests.factories import PASSWORD, make_account, make_customer, make_member

LAST_OWNER = "最後のオーナーは変更・無効化・削除できません。"
OWNERS_ONLY = "オーナーの追加・変更はオーナーのみが行えます。"


def new_member(email="newcomer@example.jp", role="user", password="initial-pass-1", name="新人 太郎"):
    """Add-member form data."""
    return {"email": email, "name": name, "role": role, "password": password}


def reload(membership: Membership) -> Membership:
    """Read the membership again from the database."""
    db.session.expire_all()
    return db.session.get(Membership, membership.id)


def test_added_member_can_sign_in(make_app):
    """An owner adds a member; the member signs in with the initial password."""
    app = make_app()
    owner_client, newcomer_client = app.test_client(), app.test_client()
    with app.app_context():
        account, owner = make_account()
        owner_email = owner.user.email
    owner_client.post("/login", data={"email": owner_email, "password": PASSWORD})
    response = owner_client.post("/settings/users/new", data=new_member(email=" NewComer@Example.JP "),
                                 follow_redirects=True)
    assert "ユーザーを追加しました。" in response.get_data(as_text=True)
    assert "newcomer@example.jp" in response.get_data(as_text=True)
    login = newcomer_client.post("/login", data={"email": "newcomer@example.jp", "password": "initial-pass-1"})
    assert login.status_code == 302
    assert newcomer_client.get("/settings/users").status_code == 403  # a plain user


def test_existing_identity_keeps_its_password(client, auth):
    """Adding someone who already signs in elsewhere links them without changing their password."""
    other, other_owner = make_account()
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post("/settings/users/new", data=new_member(email=other_owner.user.email,
                                                                 password="different-pass-1"), follow_redirects=True)
    assert "パスワードは変更されません" in response.get_data(as_text=True)
    auth.logout()
    assert auth.login(other_owner.user.email, PASSWORD).status_code == 302


def test_duplicate_and_short_password_are_form_errors(client, auth):
    """An existing member and a short password are refused beside the fields."""
    account, owner = make_account()
    member = make_member(account, Role.USER)
    auth.login_member(owner)
    duplicate = client.post("/settings/users/new", data=new_member(email=member.user.email))
    assert duplicate.status_code == 422
    assert "すでに登録されています" in duplicate.get_data(as_text=True)
    short = client.post("/settings/users/new", data=new_member(password="short"))
    assert short.status_code == 422
    assert "10文字以上" in short.get_data(as_text=True)
    assert db.session.scalar(select(User).where(User.email == "newcomer@example.jp")) is None


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


def test_deleted_member_can_be_added_again(client, auth):
    """Re-adding a deleted member brings the same membership back with the new role."""
    account, owner = make_account()
    member = make_member(account, Role.USER, email="returner@example.jp")
    auth.login_member(owner)
    client.post(f"/settings/users/{member.id}/delete")
    response = client.post("/settings/users/new", data=new_member(email="returner@example.jp", role="manager"))
    assert response.status_code == 302
    back = reload(member)
    assert (back.state, back.role) == (MembershipState.ACTIVE, Role.MANAGER)
