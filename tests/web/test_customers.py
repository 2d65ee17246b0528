"""Customers: create, edit, delete, search, pagination and 担当者閲覧制限."""
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditLog, Customer, Role
from tests.factories import make_account, make_customer, make_member


def form(name="山田 太郎", email="yamada@client.example", company="山田商事", assigned=""):
    """Customer form data."""
    return {"name": name, "email": email, "company": company, "assigned_user_id": assigned}


def live_customers(account_id):
    """Customers of the account that are not deleted."""
    db.session.expire_all()
    return list(db.session.scalars(select(Customer).where(Customer.account_id == account_id,
                                                          Customer.deleted_at.is_(None))))


def test_create_normalises_email_and_lists_it(client, auth):
    """A new customer appears in the list with a trimmed, lower-cased address and an audit entry."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post("/customers/new", data=form(email="  Yamada@Client.EXAMPLE "), follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "顧客を登録しました。" in page and "yamada@client.example" in page and "山田 太郎" in page
    [customer] = live_customers(account.id)
    assert customer.email == "yamada@client.example"
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.target_type == "customer",
                                                    AuditLog.target_id == customer.id)) == "customer.create"


def test_duplicate_email_is_a_form_error(client, auth):
    """The same address twice in one account is refused beside the field, and nothing is added."""
    account, owner = make_account()
    make_customer(account, email="dup@client.example")
    auth.login_member(owner)
    response = client.post("/customers/new", data=form(email="DUP@client.example"))
    assert response.status_code == 422
    assert "このメールアドレスの顧客はすでに登録されています。" in response.get_data(as_text=True)
    assert len(live_customers(account.id)) == 1


def test_same_email_in_another_account_is_fine(client, auth):
    """Uniqueness is per account."""
    other, _ = make_account()
    make_customer(other, email="shared@client.example")
    account, owner = make_account()
    auth.login_member(owner)
    assert client.post("/customers/new", data=form(email="shared@client.example")).status_code == 302


def test_bad_input_shows_japanese_errors(client, auth):
    """Empty name and a malformed address are explained in Japanese."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post("/customers/new", data=form(name="", email="not-an-address"))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "入力してください。" in page and "メールアドレスの形式が正しくありません。" in page
    assert live_customers(account.id) == []


def test_assignee_from_another_account_is_refused(client, auth):
    """A tampered 担当者 id is a form error, not a cross-account link."""
    other, other_owner = make_account()
    account, owner = make_account()
    auth.login_member(owner)
    response = client.post("/customers/new", data=form(assigned=str(other_owner.id)))
    assert response.status_code == 422
    assert "担当者を選び直してください。" in response.get_data(as_text=True)


def test_edit_keeps_assignee_selected_and_saves(client, auth):
    """The edit form shows the current values and saves changes."""
    account, owner = make_account()
    manager = make_member(account, Role.MANAGER)
    customer = make_customer(account, assigned=manager, email="before@client.example")
    auth.login_member(owner)
    page = BeautifulSoup(client.get(f"/customers/{customer.id}/edit").get_data(as_text=True), "html.parser")
    assert page.find("select", {"name": "assigned_user_id"}).find("option", selected=True)["value"] == str(manager.id)
    assert page.find("input", {"name": "email"})["value"] == "before@client.example"
    response = client.post(f"/customers/{customer.id}/edit",
                           data=form(name="新しい名前", email="after@client.example", assigned=str(owner.id)))
    assert response.status_code == 302
    db.session.refresh(customer)
    assert (customer.name, customer.email, customer.assigned_membership_id) == (
        "新しい名前", "after@client.example", owner.id)


def test_edit_to_existing_email_is_refused(client, auth):
    """Editing cannot create a duplicate either."""
    account, owner = make_account()
    make_customer(account, email="taken@client.example")
    customer = make_customer(account, email="mine@client.example")
    auth.login_member(owner)
    response = client.post(f"/customers/{customer.id}/edit", data=form(email="taken@client.example"))
    assert response.status_code == 422
    db.session.refresh(customer)
    assert customer.email == "mine@client.example"


def test_delete_confirms_then_hides_and_frees_the_address(client, auth):
    """GET only asks; POST deletes; the address can be registered again afterwards."""
    account, owner = make_account()
    customer = make_customer(account, email="gone@client.example")
    auth.login_member(owner)
    confirm = client.get(f"/customers/{customer.id}/delete").get_data(as_text=True)
    assert "はい、削除します" in confirm
    assert len(live_customers(account.id)) == 1
    client.post(f"/customers/{customer.id}/delete")
    assert live_customers(account.id) == []
    assert client.get(f"/customers/{customer.id}").status_code == 404
    assert client.post("/customers/new", data=form(email="gone@client.example")).status_code == 302


def test_search_finds_by_name_company_and_email_literally(client, auth):
    """Search looks at name, company and address; % and _ are plain characters."""
    account, owner = make_account()
    make_customer(account, name="佐藤 一郎", company="100%商事", email="sato@client.example")
    make_customer(account, name="鈴木 花子", company="鈴木工業", email="suzuki_h@client.example")
    make_customer(account, name="高橋 誠", company="高橋建設", email="takahashi@client.example")
    auth.login_member(owner)

    def names(query):
        page = BeautifulSoup(client.get("/customers", query_string={"q": query}).get_data(as_text=True), "html.parser")
        return {row.find("td").get_text(strip=True) for row in page.select("tbody tr") if row.find("a")}

    assert names("佐藤") == {"佐藤 一郎"}
    assert names("工業") == {"鈴木 花子"}
    assert names("TAKAHASHI@") == {"高橋 誠"}
    assert names("100%") == {"佐藤 一郎"}
    assert names("_") == {"鈴木 花子"}
    assert "に一致する顧客はいません" in client.get("/customers?q=存在しない").get_data(as_text=True)


def test_list_is_paginated(client, auth, app):
    """Long lists are split into pages with a total."""
    account, owner = make_account()
    for number in range(app.config["PER_PAGE"] + 5):
        make_customer(account, name=f"顧客{number:03d}")
    auth.login_member(owner)
    first = BeautifulSoup(client.get("/customers").get_data(as_text=True), "html.parser")
    second = BeautifulSoup(client.get("/customers?page=2").get_data(as_text=True), "html.parser")
    assert len(first.select("tbody tr")) == app.config["PER_PAGE"]
    assert len(second.select("tbody tr")) == 5
    assert f"全{app.config['PER_PAGE'] + 5}件" in first.get_text()


def test_viewing_restriction_limits_plain_users(client, auth):
    """With 担当者閲覧制限 on, a plain user sees and opens only their own customers."""
    account, owner = make_account()
    user = make_member(account, Role.USER)
    mine = make_customer(account, name="自分の顧客", assigned=user)
    theirs = make_customer(account, name="他人の顧客", assigned=owner)
    account.viewing_restricted = True
    db.session.commit()
    auth.login_member(user)
    listing = client.get("/customers").get_data(as_text=True)
    assert "自分の顧客" in listing and "他人の顧客" not in listing
    assert client.get(f"/customers/{mine.id}").status_code == 200
    for path, title in ((f"/customers/{theirs.id}", "閲覧権限がありません"),
                        (f"/customers/{theirs.id}/edit", "操作権限がありません")):
        response = client.get(path)
        assert response.status_code == 403
        assert title in response.get_data(as_text=True)


def test_viewing_restriction_does_not_limit_managers(client, auth):
    """Managers and above still see every customer."""
    account, owner = make_account()
    manager = make_member(account, Role.MANAGER)
    theirs = make_customer(account, name="他人の顧客", assigned=owner)
    account.viewing_restricted = True
    db.session.commit()
    auth.login_member(manager)
    assert "他人の顧客" in client.get("/customers").get_data(as_text=True)
    assert client.get(f"/customers/{theirs.id}").status_code == 200


def test_viewing_restriction_toggle_from_account_settings(client, auth):
    """An admin turns the restriction on from アカウント設定, and it takes effect for users."""
    account, owner = make_account()
    user = make_member(account, Role.USER)
    make_customer(account, name="オーナー担当", assigned=owner)
    auth.login_member(owner)
    response = client.post("/settings/account", data={"name": account.name, "viewing_restricted": "y"})
    assert response.status_code == 302
    auth.logout()
    auth.login_member(user)
    assert "オーナー担当" not in client.get("/customers").get_data(as_text=True)


def test_customers_on_a_member_domain_are_flagged(client, auth):
    """An internal address registered as a customer is marked, so admins can check it on purpose."""
    account, owner = make_account()
    make_member(account, Role.USER, email="sales@ourco.example.jp")
    make_customer(account, name="経理部", email="accounting@ourco.example.jp")
    make_customer(account, name="お客様", email="buyer@client.example")
    auth.login_member(owner)
    page = BeautifulSoup(client.get("/customers").get_data(as_text=True), "html.parser")
    flagged = {row.find("td").get_text(strip=True) for row in page.select("tbody tr") if "社内ドメイン" in row.get_text()}
    assert flagged == {"経理部"}


def assignee_options(page: str) -> list[str]:
    """The labels offered in the 担当者 select."""
    select_tag = BeautifulSoup(page, "html.parser").find("select", {"name": "assigned_user_id"})
    return [option.get_text() for option in select_tag.find_all("option")]


def test_a_plain_user_assigns_only_themselves_or_nobody(client, auth):
    """A user cannot make the owner 担当者 (the owner's mailbox would send for them): 422 beside the field."""
    account, owner = make_account()
    user = make_member(account, Role.USER)
    auth.login_member(user)
    assert assignee_options(client.get("/customers/new").get_data(as_text=True)) == ["（未設定）", user.user.name]
    refused = client.post("/customers/new", data=form(assigned=str(owner.id)))
    assert refused.status_code == 422
    assert "ほかのユーザーを担当者にできるのはマネージャー以上です。" in refused.get_data(as_text=True)
    assert live_customers(account.id) == []
    assert client.post("/customers/new", data=form(assigned=str(user.id))).status_code == 302
    [customer] = live_customers(account.id)
    assert customer.assigned_membership_id == user.id
    moved = client.post(f"/customers/{customer.id}/edit", data=form(assigned=str(owner.id)))
    assert moved.status_code == 422
    assert live_customers(account.id)[0].assigned_membership_id == user.id
    assert client.post(f"/customers/{customer.id}/edit", data=form(assigned="")).status_code == 302
    assert live_customers(account.id)[0].assigned_membership_id is None


def test_a_plain_user_keeps_someone_elses_assignment_when_editing(client, auth):
    """Editing a customer another member looks after keeps that 担当者 (shown, not changed)."""
    account, owner = make_account()
    user = make_member(account, Role.USER)
    customer = make_customer(account, assigned=owner, email="kept@client.example")
    auth.login_member(user)
    page = client.get(f"/customers/{customer.id}/edit").get_data(as_text=True)
    assert assignee_options(page) == ["（未設定）", user.user.name, owner.user.name]
    response = client.post(f"/customers/{customer.id}/edit", data=form(name="新しい名前", email="kept@client.example",
                                                                     assigned=str(owner.id)))
    assert response.status_code == 302
    [stored] = live_customers(account.id)
    assert (stored.name, stored.assigned_membership_id) == ("新しい名前", owner.id)


def test_managers_assign_anyone(client, auth):
    """A manager picks any active member as 担当者."""
    account, owner = make_account()
    manager = make_member(account, Role.MANAGER)
    auth.login_member(manager)
    assert owner.user.name in assignee_options(client.get("/customers/new").get_data(as_text=True))
    assert client.post("/customers/new", data=form(assigned=str(owner.id))).status_code == 302
    assert live_customers(account.id)[0].assigned_membership_id == owner.id


def test_the_service_refuses_a_plain_users_assignment_too(app):
    """The rule lives in the service, not only in the form's choices."""
    import pytest

    from portal.customers.services import AssignToOthersDenied, CustomerData, create_customer
    account, owner = make_account()
    user = make_member(account, Role.USER)
    with pytest.raises(AssignToOthersDenied):
        create_customer(db.session, user, CustomerData(name="x", email="x@client.example",
                                                                assigned_membership_id=owner.id))
