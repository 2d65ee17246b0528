"""Invitations: adding an address never hands over an existing login; the person joins through the link."""
from datetime import timedelta

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.extensions import db
from portal.mailsync.engine import account_snapshot
from portal.models import AuditLog, Invitation, Membership, MembershipState, Role, User
from tests.factories import PASSWORD, make_account, make_member

NEW_PASSWORD = "my-own-secret-42"


def invite(client, email, role="user", name="招待 太郎", **extra):
    """Post the add-member form; returns the response."""
    return client.post("/settings/users/new", data={"email": email, "name": name, "role": role, **extra})


def link_of(response) -> str:
    """The one-time link shown on the link page (as a path)."""
    assert response.status_code == 200, response.get_data(as_text=True)
    value = BeautifulSoup(response.get_data(as_text=True), "html.parser").find(id="one-time-link")["value"]
    return "/" + value.split("/", 3)[3]


def membership_in(account, email) -> Membership | None:
    """The membership of the login with this address in the account, as stored."""
    db.session.expire_all()
    return db.session.scalar(select(Membership).join(User).where(Membership.account_id == account.id,
                                                                 User.email == email))


def join(client, path, password, confirm=None):
    """Post the invitation page's password form."""
    return client.post(path, data={"password": password, "password_confirm": confirm or password})


@pytest.fixture
def two_companies(app):
    """Account B with a member who signs in with their own password; account A with its owner."""
    account_b, owner_b = make_account("B社")
    newhire = make_member(account_b, Role.USER, email="newhire@example.jp")
    account_a, owner_a = make_account("A社")
    return account_a, owner_a, account_b, owner_b, newhire


def test_adding_an_existing_login_does_not_hand_it_over(make_app, two_companies):
    """A adds B's member as admin: nothing changes until the person accepts; B's admin cannot join A with it."""
    account_a, owner_a, account_b, owner_b, newhire = two_companies
    app = make_app()
    admin_a, b_side = app.test_client(), app.test_client()
    admin_a.post("/login", data={"email": owner_a.user.email, "password": PASSWORD})
    # The old form took an initial password and linked the login at once; a posted one is ignored now.
    response = invite(admin_a, "newhire@example.jp", role="admin", password="chosen-by-a-admin")
    assert "パスワードは変更されません" not in response.get_data(as_text=True)
    assert membership_in(account_a, "newhire@example.jp") is None
    # Whoever knows the B-side password (B's admin set it once) signs in: A is not among the accounts.
    assert b_side.post("/login", data={"email": "newhire@example.jp", "password": PASSWORD}).status_code == 302
    page = BeautifulSoup(b_side.get("/accounts/select").get_data(as_text=True), "html.parser")
    choices = page.find_all("input", {"name": "membership_id"})
    assert [choice.find_parent("form").get_text() for choice in choices if "A社" in
            choice.find_parent("form").get_text()] == []
    assert "A社" in page.find(id="invitations").get_text()  # listed as an invitation, with 辞退 only
    assert "招待リンクを開くと承諾できます" in page.get_text()
    a_membership_ids = db.session.scalars(select(Membership.id).where(Membership.account_id == account_a.id)).all()
    for membership_id in a_membership_ids:
        assert b_side.post("/accounts/select", data={"membership_id": membership_id}).status_code == 422


def test_the_admin_sees_the_same_for_known_and_unknown_addresses(client, auth, two_companies):
    """Same status, message and fields whether the address signs in elsewhere or not; no real name shown."""
    account_a, owner_a, account_b, owner_b, newhire = two_companies
    auth.login_member(owner_a)
    client.get("/")  # the welcome message is shown here, not on the pages compared below
    known = invite(client, "newhire@example.jp", name="入力した名前")
    unknown = invite(client, "nobody@example.jp", name="入力した名前")
    assert known.status_code == unknown.status_code == 200

    def shape(response, email):
        """The page with its address and token blanked out."""
        text = response.get_data(as_text=True).replace(email, "EMAIL")
        link = link_of(response)
        return text.replace(link.rsplit("/", 1)[1], "TOKEN")
    known_page, unknown_page = shape(known, "newhire@example.jp"), shape(unknown, "nobody@example.jp")
    expiry = "有効期限は"
    assert known_page.split(expiry)[0] == unknown_page.split(expiry)[0]
    assert newhire.user.name not in known.get_data(as_text=True)
    listing = client.get("/settings/users").get_data(as_text=True)
    assert newhire.user.name not in listing and listing.count("招待中") >= 2
    rows = BeautifulSoup(listing, "html.parser").select("#invitations tbody tr")
    cells = [[cell.get_text(" ", strip=True) for cell in row.find_all("td")][:3] for row in rows]
    assert cells[0][0] == "newhire@example.jp" and cells[1][0] == "nobody@example.jp"
    assert cells[0][1:] == cells[1][1:]


def test_a_new_person_sets_their_own_password_through_the_link(client, auth):
    """No initial password is typed by the admin: the link lets the person choose one and join."""
    account, owner = make_account()
    auth.login_member(owner)
    path = link_of(invite(client, "fresh@example.jp", role="manager", name="新人 花子"))
    auth.logout()
    page = client.get(path).get_data(as_text=True)
    assert "アカウントへの招待" in page and account.name in page
    mismatch = join(client, path, NEW_PASSWORD, "something-else-1")
    assert mismatch.status_code == 422 and "確認用のパスワードが一致しません。" in mismatch.get_data(as_text=True)
    response = join(client, path, NEW_PASSWORD)
    assert response.status_code == 302
    membership = membership_in(account, "fresh@example.jp")
    assert membership.role == Role.MANAGER and membership.user.name == "新人 花子"
    assert client.get("/customers").status_code == 200  # signed in, working in the account
    assert db.session.scalar(select(Invitation)) is None
    assert client.get(path).status_code == 404  # used up


def test_an_existing_person_joins_with_their_own_password_only(client, auth, two_companies):
    """The link asks for the existing login's own password; a wrong one joins nothing, the name stays theirs."""
    account_a, owner_a, account_b, owner_b, newhire = two_companies
    auth.login_member(owner_a)
    path = link_of(invite(client, "newhire@example.jp", role="admin", name="偽の名前"))
    auth.logout()
    wrong = join(client, path, "guessed-password-1")
    assert wrong.status_code == 401 and "パスワードが正しくありません。" in wrong.get_data(as_text=True)
    assert membership_in(account_a, "newhire@example.jp") is None
    assert join(client, path, PASSWORD).status_code == 302
    joined = membership_in(account_a, "newhire@example.jp")
    assert joined.role == Role.ADMIN and joined.user.name == newhire.user.name
    auth.logout()
    assert auth.login("newhire@example.jp", "guessed-password-1").status_code == 401  # nothing was set


def test_a_signed_in_invitee_accepts_with_a_button(client, auth, two_companies):
    """Signed in as the invited address, the link offers 承諾 and 辞退; accepting switches to the account."""
    account_a, owner_a, account_b, owner_b, newhire = two_companies
    auth.login_member(owner_a)
    path = link_of(invite(client, "newhire@example.jp"))
    auth.logout()
    auth.login_member(newhire)
    page = client.get(path).get_data(as_text=True)
    assert "承諾して参加する" in page and 'name="password"' not in page
    assert client.post(path, data={"answer": "accept"}).status_code == 302
    assert membership_in(account_a, "newhire@example.jp").state == MembershipState.ACTIVE
    assert "A社" in client.get("/").get_data(as_text=True)


def test_someone_else_signed_in_cannot_use_the_link(client, auth, two_companies):
    """The link names its address; another signed-in person is told to sign out first and cannot accept."""
    account_a, owner_a, account_b, owner_b, newhire = two_companies
    auth.login_member(owner_a)
    path = link_of(invite(client, "newhire@example.jp"))
    page = client.get(path).get_data(as_text=True)
    assert "ログアウトしてから" in page and 'name="password"' not in page
    assert client.post(path, data={"answer": "accept"}).status_code == 422
    assert client.post(path, data={"password": PASSWORD, "password_confirm": PASSWORD}).status_code == 422
    assert membership_in(account_a, "newhire@example.jp") is None


def test_declining_from_the_link_or_the_account_list(client, auth, two_companies):
    """A decline removes the invitation (audited); the admin's list no longer shows it."""
    account_a, owner_a, account_b, owner_b, newhire = two_companies
    auth.login_member(owner_a)
    path = link_of(invite(client, "newhire@example.jp"))
    link_of(invite(client, "other@example.jp"))
    auth.logout()
    assert client.post(path, data={"answer": "decline"}).status_code == 302
    assert client.get(path).status_code == 404
    auth.login_member(newhire)
    auth.logout()
    auth.login_member(owner_a)
    client.post("/settings/users/new", data={"email": "newhire@example.jp", "name": "x", "role": "user"})
    auth.logout()
    auth.login_member(newhire)
    invitation = db.session.scalar(select(Invitation).where(Invitation.email == "newhire@example.jp"))
    assert client.post(f"/accounts/invitations/{invitation.id}/decline").status_code == 302
    assert db.session.scalar(select(Invitation).where(Invitation.email == "newhire@example.jp")) is None
    other = db.session.scalar(select(Invitation).where(Invitation.email == "other@example.jp"))
    assert client.post(f"/accounts/invitations/{other.id}/decline").status_code == 404  # not addressed to them
    actions = db.session.scalars(select(AuditLog.action).where(AuditLog.account_id == account_a.id)).all()
    assert actions.count("invitation.decline") == 2


def test_renewing_cancelling_and_expiry(client, auth):
    """A renewed link replaces the old one; a cancelled or expired invitation's link answers 404."""
    account, owner = make_account()
    auth.login_member(owner)
    first = link_of(invite(client, "later@example.jp"))
    invitation = db.session.scalar(select(Invitation))
    second = link_of(client.post(f"/settings/users/invitations/{invitation.id}/link"))
    assert first != second
    assert client.get(first).status_code == 404 and client.get(second).status_code == 200
    db.session.expire_all()
    invitation = db.session.get(Invitation, invitation.id)
    invitation.expires_at = invitation.created_at - timedelta(seconds=1)
    db.session.commit()
    assert client.get(second).status_code == 404
    assert "期限切れ" in client.get("/settings/users").get_data(as_text=True)
    assert "はい、取り消します" in client.get(f"/settings/users/invitations/{invitation.id}/cancel").get_data(
        as_text=True)
    assert client.post(f"/settings/users/invitations/{invitation.id}/cancel").status_code == 302
    assert db.session.scalar(select(Invitation)) is None


def test_a_pending_invitee_is_not_a_member_anywhere(client, auth, two_companies):
    """Until they accept: not an assignee choice, not a member address for mail rules, not in the member list."""
    account_a, owner_a, account_b, owner_b, newhire = two_companies
    auth.login_member(owner_a)
    invite(client, "newhire@example.jp")
    assert "newhire@example.jp" not in account_snapshot(db.session, account_a.id).member_addresses
    assignees = BeautifulSoup(client.get("/customers/new").get_data(as_text=True), "html.parser")
    assert newhire.user.name not in assignees.find("select", {"name": "assigned_user_id"}).get_text()
    members = BeautifulSoup(client.get("/settings/users").get_data(as_text=True), "html.parser")
    assert "newhire@example.jp" not in members.find(id="members").get_text()


def test_existing_and_invited_addresses_are_refused_beside_the_field(client, auth):
    """This account's own members (even disabled: an invitation never re-enables) and pending invitations."""
    account, owner = make_account()
    disabled = make_member(account, Role.USER, email="off@example.jp", state=MembershipState.DISABLED)
    auth.login_member(owner)
    refused = invite(client, "OFF@example.jp")
    assert refused.status_code == 422 and "すでに登録されています" in refused.get_data(as_text=True)
    invite(client, "pending@example.jp")
    again = invite(client, "pending@example.jp")
    assert again.status_code == 422 and "すでに招待中です" in again.get_data(as_text=True)
    assert membership_in(account, disabled.user.email).state == MembershipState.DISABLED


def test_an_admin_cannot_invite_an_owner(client, auth):
    """Only owners grant the owner role, by invitation too."""
    account, owner = make_account()
    auth.login_member(make_member(account, Role.ADMIN))
    response = invite(client, "boss@example.jp", role="owner")
    assert response.status_code == 422 and "オーナーのみ" in response.get_data(as_text=True)
    assert db.session.scalar(select(Invitation)) is None


def test_a_removed_member_comes_back_through_an_invitation(client, auth):
    """A deleted member's row returns with the new role once they accept with their own password."""
    account, owner = make_account()
    member = make_member(account, Role.USER, email="returner@example.jp")
    auth.login_member(owner)
    client.post(f"/settings/users/{member.id}/delete")
    path = link_of(invite(client, "returner@example.jp", role="manager"))
    auth.logout()
    assert join(client, path, PASSWORD).status_code == 302
    back = membership_in(account, "returner@example.jp")
    assert (back.id, back.state, back.role) == (member.id, MembershipState.ACTIVE, Role.MANAGER)


def test_wrong_passwords_on_invitation_links_are_limited(make_app, two_companies):
    """Guessing an existing login's password through a link counts like failed sign-ins (per client, 429)."""
    account_a, owner_a, account_b, owner_b, newhire = two_companies
    app = make_app(LOGIN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    client.post("/login", data={"email": owner_a.user.email, "password": PASSWORD})
    path = link_of(invite(client, "newhire@example.jp"))
    client.post("/logout")
    for _ in range(3):
        assert join(client, path, "wrong-password-1").status_code == 401
    response = join(client, path, PASSWORD)
    assert response.status_code == 429 and "しばらくお待ちください" in response.get_data(as_text=True)
    assert membership_in(account_a, "newhire@example.jp") is None


def test_an_invitation_never_re_enables_a_disabled_member(client, auth, two_companies):
    """If the person became a disabled member meanwhile, the link refuses (409) and they stay disabled."""
    from portal.users.services import add_member
    account_a, owner_a, account_b, owner_b, newhire = two_companies
    auth.login_member(owner_a)
    path = link_of(invite(client, "newhire@example.jp"))
    auth.logout()
    direct, _ = add_member(db.session, account_a, None, "newhire@example.jp", "x", Role.USER, "unused-pass-1")
    direct.state = MembershipState.DISABLED
    db.session.commit()
    refused = join(client, path, PASSWORD)
    assert refused.status_code == 409 and "無効になっています" in refused.get_data(as_text=True)
    assert membership_in(account_a, "newhire@example.jp").state == MembershipState.DISABLED
