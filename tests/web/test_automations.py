"""セールスオートメーション screens: create/edit/delete, validation, roles, other accounts, enrol and stop."""
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.automations import services
from portal.extensions import db
from portal.models import Enrollment, EnrollmentState, MailTemplate, Role, Sequence, StopReason, utcnow
from tests.factories import enable_email, make_account, make_customer, make_member

ROLES = [Role.OWNER, Role.ADMIN, Role.MANAGER, Role.USER]


@pytest.fixture
def world(app):
    """An account with メール on: its owner, a member per role, a template, a customer and a sequence."""
    account, owner = make_account()
    enable_email(account, owner)
    members = {Role.OWNER: owner, **{role: make_member(account, role) for role in ROLES[1:]}}
    template = add_template(account.id, "お礼")
    customer = make_customer(account, name="山田 太郎", email="yamada@client.example", assigned=members[Role.USER])
    sequence = services.create_sequence(db.session, owner, services.SequenceData(
        "既存のフォロー", True, [services.StepData(2, template.id)]))
    return {"account": account, "members": members, "template": template, "customer": customer,
            "sequence": sequence}


@pytest.fixture
def elsewhere(app):
    """Another account with its own sequence, template, customer and a running enrolment."""
    account, owner = make_account()
    template = add_template(account.id, "他社のテンプレート")
    customer = make_customer(account, email="other@client.example")
    sequence = services.create_sequence(db.session, owner, services.SequenceData(
        "他社のフォロー", True, [services.StepData(0, template.id)]))
    enrollment = services.enroll_customer(db.session, owner, sequence, customer, utcnow())
    return {"template": template, "customer": customer, "sequence": sequence, "enrollment": enrollment}


def add_template(account_id: int, name: str) -> MailTemplate:
    """A shared template of the account."""
    template = MailTemplate(account_id=account_id, name=name, subject="{{顧客名}}様", body="本文")
    db.session.add(template)
    db.session.commit()
    return template


def form(name="資料請求フォロー", rows=((0, None),), stop_on_reply=True, template=None) -> dict:
    """Form data: rows of (wait days, template id or None for the fixture's template)."""
    data = {"name": name}
    if stop_on_reply:
        data["stop_on_reply"] = "y"
    for index, (wait, template_id) in enumerate(rows):
        data[f"steps-{index}-wait_days"] = "" if wait is None else str(wait)
        data[f"steps-{index}-template_id"] = str(template_id if template_id is not None else template.id)
    return data


def sequences(account_id) -> list[Sequence]:
    """The account's sequences as stored."""
    db.session.expire_all()
    return list(db.session.scalars(select(Sequence).where(Sequence.account_id == account_id).order_by(Sequence.id)))


def enrollments_of(customer) -> list[Enrollment]:
    """The customer's enrolments as stored."""
    db.session.expire_all()
    return list(db.session.scalars(select(Enrollment).where(Enrollment.customer_id == customer.id)))


def test_create_edit_delete(client, auth, world):
    """Create with two steps (an empty row between is ignored), edit with the pen, delete via 「はい、削除します」."""
    auth.login_member(world["members"][Role.OWNER])
    page = client.get("/automations/new").get_data(as_text=True)
    checkbox = BeautifulSoup(page, "html.parser").find("input", {"name": "stop_on_reply"})
    assert checkbox.has_attr("checked")  # 自動停止 is on by default
    assert "お客様からメールを受信したら、セールスオートメーションを自動で停止" in page
    data = form(rows=((0, None),), template=world["template"])
    data.update({"steps-2-wait_days": "3", "steps-2-template_id": str(world["template"].id)})
    response = client.post("/automations/new", data=data)
    assert response.status_code == 302
    created = sequences(world["account"].id)[-1]
    assert (created.name, created.stop_on_reply) == ("資料請求フォロー", True)
    assert [(s.position, s.wait_days) for s in created.steps] == [(0, 0), (1, 3)]
    listing = BeautifulSoup(client.get("/automations").get_data(as_text=True), "html.parser")
    row = listing.find("a", string="資料請求フォロー").find_parent("tr")
    assert [cell.get_text(strip=True) for cell in row.find_all("td")][1:4] == ["2", "オン", "0"]
    pen = row.select_one("a:has(i.bi-pencil)")["href"]
    edit_page = client.get(pen).get_data(as_text=True)
    assert 'value="3"' in edit_page
    client.post(pen, data=form(name="変更後", rows=((5, None),), stop_on_reply=False, template=world["template"]))
    changed = sequences(world["account"].id)[-1]
    assert (changed.name, changed.stop_on_reply, [s.wait_days for s in changed.steps]) == ("変更後", False, [5])
    trash = row.select_one("a:has(i.bi-trash)")["href"]
    assert "はい、削除します" in client.get(trash).get_data(as_text=True)
    assert client.post(trash).status_code == 302
    assert [s.name for s in sequences(world["account"].id)] == ["既存のフォロー"]


@pytest.mark.parametrize("change,message", [
    ({"steps-0-template_id": "", "steps-0-wait_days": ""}, "ステップを1つ以上設定してください"),
    ({"steps-0-template_id": ""}, "テンプレートを選んでください。"),
    ({"steps-0-wait_days": "400"}, "0〜365の範囲で入力してください。"),
    ({"steps-0-wait_days": "-1"}, "0〜365の範囲で入力してください。"),
    ({"steps-0-wait_days": "三日"}, "日数は半角数字で入力してください。"),
    ({"steps-1-wait_days": "4"}, "テンプレートを選んでください。"),
    ({"name": ""}, "入力してください。"),
])
def test_bad_forms_are_422_with_japanese_errors(client, auth, world, change, message):
    """Each mistake is explained in Japanese and nothing is saved."""
    auth.login_member(world["members"][Role.MANAGER])
    response = client.post("/automations/new", data=dict(form(template=world["template"]), **change))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert len(sequences(world["account"].id)) == 1


def test_another_accounts_template_is_refused(client, auth, world, elsewhere):
    """A template id of another account (or one that does not exist) is not a choice: 422."""
    auth.login_member(world["members"][Role.OWNER])
    for template_id in (elsewhere["template"].id, 999999):
        response = client.post("/automations/new", data=form(rows=((0, template_id),)))
        assert response.status_code == 422
        assert "選択肢から選んでください。" in response.get_data(as_text=True)
    response = client.post(f"/automations/{world['sequence'].id}/edit",
                           data=form(rows=((0, elsewhere["template"].id),)))
    assert response.status_code == 422
    assert [s.template_id for s in sequences(world["account"].id)[0].steps] == [world["template"].id]


def test_service_refuses_unknown_templates_too(world, elsewhere):
    """The service checks template ownership itself, whatever the form did."""
    with pytest.raises(services.UnknownTemplate):
        services.create_sequence(db.session, world["members"][Role.OWNER], services.SequenceData(
            "x", True, [services.StepData(0, elsewhere["template"].id)]))


@pytest.mark.parametrize("role", ROLES)
def test_only_managers_and_up_change_sequences(client, auth, world, role):
    """Plain users get 403 on create, edit and delete (with a Japanese reason); managers and up get through."""
    auth.login_member(world["members"][role])
    sequence_id = world["sequence"].id
    expected = 403 if role == Role.USER else 200
    for path in ("/automations/new", f"/automations/{sequence_id}/edit", f"/automations/{sequence_id}/delete"):
        response = client.get(path)
        assert response.status_code == expected, path
        if expected == 403:
            assert "権限がありません" in response.get_data(as_text=True)
    assert client.post("/automations/new", data=form(template=world["template"])).status_code == (
        403 if role == Role.USER else 302)
    assert client.post(f"/automations/{sequence_id}/edit",
                       data=form(name="改名", template=world["template"])).status_code == (
        403 if role == Role.USER else 302)
    listing = client.get("/automations").get_data(as_text=True)
    assert ("bi-pencil" in listing) == (role != Role.USER)
    if role == Role.USER:
        assert client.post(f"/automations/{sequence_id}/delete").status_code == 403
        assert sequences(world["account"].id)[0].name == "既存のフォロー"


@pytest.mark.parametrize("role", ROLES)
def test_another_accounts_objects_are_404_for_every_role(client, auth, world, elsewhere, role):
    """Another account's sequence, enrolment or customer does not exist here, whatever the role."""
    auth.login_member(world["members"][role])
    sequence_id, enrollment_id = elsewhere["sequence"].id, elsewhere["enrollment"].id
    for method, path, data in [
        ("get", f"/automations/{sequence_id}", {}),
        ("get", f"/automations/{sequence_id}/edit", {}),
        ("post", f"/automations/{sequence_id}/edit", form(template=world["template"])),
        ("get", f"/automations/{sequence_id}/delete", {}),
        ("post", f"/automations/{sequence_id}/delete", {}),
        ("post", f"/automations/{sequence_id}/enroll", {"customer_id": world["customer"].id}),
        ("post", "/automations/enroll", {"sequence_id": sequence_id, "customer_id": world["customer"].id}),
        ("post", f"/automations/{world['sequence'].id}/enroll", {"customer_id": elsewhere["customer"].id}),
        ("post", f"/automations/enrollments/{enrollment_id}/stop", {}),
    ]:
        response = getattr(client, method)(path, data=data)
        assert response.status_code == 404, (method, path)
    db.session.expire_all()
    assert db.session.get(Enrollment, enrollment_id).state == EnrollmentState.ACTIVE
    assert db.session.get(Sequence, sequence_id).name == "他社のフォロー"
    assert enrollments_of(world["customer"]) == []


def test_plain_user_enrolls_and_stops_from_the_customer_page(client, auth, world):
    """A plain user enrols their customer, sees it on the customer page, stops it and sees why and when."""
    user, customer, sequence = world["members"][Role.USER], world["customer"], world["sequence"]
    auth.login_member(user)
    page = BeautifulSoup(client.get(f"/customers/{customer.id}").get_data(as_text=True), "html.parser")
    enrol_form = page.find("form", {"action": "/automations/enroll"})
    assert enrol_form.find("option", string="既存のフォロー") is not None
    assert "セールスオートメーションに登録" in enrol_form.get_text()
    response = client.post("/automations/enroll", data={"sequence_id": sequence.id, "customer_id": customer.id,
                                                        "next": f"/customers/{customer.id}"})
    assert (response.status_code, response.headers["Location"]) == (302, f"/customers/{customer.id}")
    [enrollment] = enrollments_of(customer)
    assert enrollment.state == EnrollmentState.ACTIVE and enrollment.enrolled_by_membership_id == user.id
    assert enrollment.next_due_at - enrollment.started_at == timedelta(days=2)
    panel = BeautifulSoup(client.get(f"/customers/{customer.id}").get_data(as_text=True), "html.parser")
    panel = panel.find(id="automations")
    assert "既存のフォロー" in panel.get_text() and "実行中" in panel.get_text()
    stop_url = panel.find("form", action=f"/automations/enrollments/{enrollment.id}/stop")["action"]
    response = client.post(stop_url, data={"next": f"/customers/{customer.id}"})
    assert response.status_code == 302
    [stopped] = enrollments_of(customer)
    assert (stopped.state, stopped.stop_reason) == (EnrollmentState.STOPPED, StopReason.BY_MEMBER)
    panel = BeautifulSoup(client.get(f"/customers/{customer.id}").get_data(as_text=True), "html.parser")
    text = panel.find(id="automations").get_text()
    assert "停止" in text and "手動で停止" in text
    assert stopped.finished_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y/%m/%d %H:%M") in text
    assert client.post(stop_url).status_code == 409  # already over


def test_enrolling_twice_is_409(client, auth, world):
    """A customer runs a sequence once at a time: 「このお客様はすでに実行中です。」 with 409."""
    auth.login_member(world["members"][Role.MANAGER])
    path = f"/automations/{world['sequence'].id}/enroll"
    assert client.post(path, data={"customer_id": world["customer"].id}).status_code == 302
    response = client.post(path, data={"customer_id": world["customer"].id})
    assert response.status_code == 409
    assert "このお客様はすでに実行中です。" in response.get_data(as_text=True)
    assert len(enrollments_of(world["customer"])) == 1


def test_enrol_again_after_a_stop_keeps_the_history(client, auth, world):
    """After a stop the customer may be enrolled again; the stopped run stays as history."""
    auth.login_member(world["members"][Role.OWNER])
    path = f"/automations/{world['sequence'].id}/enroll"
    client.post(path, data={"customer_id": world["customer"].id})
    [first] = enrollments_of(world["customer"])
    client.post(f"/automations/enrollments/{first.id}/stop")
    assert client.post(path, data={"customer_id": world["customer"].id}).status_code == 302
    assert sorted(e.state.value for e in enrollments_of(world["customer"])) == ["active", "stopped"]


def test_hidden_and_deleted_customers_cannot_be_enrolled(client, auth, world):
    """担当者閲覧制限 hides someone else's customer (403); a deleted customer is gone (404)."""
    from portal.customers.services import delete_customer
    account = world["account"]
    account.viewing_restricted = True
    db.session.commit()
    others = make_customer(account, email="sato@client.example", assigned=world["members"][Role.MANAGER])
    auth.login_member(world["members"][Role.USER])
    path = f"/automations/{world['sequence'].id}/enroll"
    response = client.post(path, data={"customer_id": others.id})
    assert response.status_code == 403 and "担当者閲覧制限" in response.get_data(as_text=True)
    delete_customer(db.session, None, world["customer"], utcnow())
    assert client.post(path, data={"customer_id": world["customer"].id}).status_code == 404
    assert client.post(path, data={}).status_code == 404
    assert enrollments_of(others) == [] and enrollments_of(world["customer"]) == []


def test_detail_lists_enrolments_and_links_only_visible_customers(client, auth, world):
    """The detail page shows every enrolment; a restricted user gets links only to their own customers."""
    account, owner, sequence = world["account"], world["members"][Role.OWNER], world["sequence"]
    account.viewing_restricted = True
    db.session.commit()
    hidden = make_customer(account, name="佐藤 花子", email="sato@client.example", assigned=owner)
    services.enroll_customer(db.session, owner, sequence, world["customer"], utcnow())
    stopped = services.enroll_customer(db.session, owner, sequence, hidden, utcnow())
    services.stop_enrollment(db.session, owner, stopped, utcnow())
    auth.login_member(world["members"][Role.USER])
    page = BeautifulSoup(client.get(f"/automations/{sequence.id}").get_data(as_text=True), "html.parser")
    assert page.find("a", string="山田 太郎") is not None
    assert page.find("a", string="佐藤 花子") is None and "佐藤 花子" in page.get_text()
    assert "手動で停止" in page.get_text() and "実行中" in page.get_text()


def test_delete_is_refused_while_customers_are_running(client, auth, world):
    """While a customer runs the sequence the trash explains and POST is 409; after a stop it goes, history too."""
    owner, sequence = world["members"][Role.OWNER], world["sequence"]
    enrollment = services.enroll_customer(db.session, owner, sequence, world["customer"], utcnow())
    auth.login_member(owner)
    page = client.get(f"/automations/{sequence.id}/delete").get_data(as_text=True)
    assert "実行中のため削除できません" in page and "はい、削除します" not in page
    assert client.post(f"/automations/{sequence.id}/delete").status_code == 409
    assert len(sequences(world["account"].id)) == 1
    client.post(f"/automations/enrollments/{enrollment.id}/stop")
    page = client.get(f"/automations/{sequence.id}/delete").get_data(as_text=True)
    assert "はい、削除します" in page and "登録履歴（1件）" in page
    assert client.post(f"/automations/{sequence.id}/delete").status_code == 302
    assert sequences(world["account"].id) == [] and enrollments_of(world["customer"]) == []


def test_nav_item_is_active_on_automation_pages(client, auth, world):
    """The menu has セールスオートメーション, highlighted on its screens."""
    auth.login_member(world["members"][Role.USER])
    page = BeautifulSoup(client.get("/automations").get_data(as_text=True), "html.parser")
    link = page.find("a", class_="nav-link", href="/automations")
    assert "セールスオートメーション" in link.get_text() and "active" in link["class"]
    assert link.find("i", class_="bi-lightning-charge") is not None


@pytest.mark.parametrize("assigned_to", [Role.OWNER, None])
def test_a_plain_user_cannot_enrol_a_customer_of_another_member(client, auth, world, assigned_to):
    """The 担当者's mailbox sends the steps, so a user enrols only their own customers: 403 with the reason."""
    account, members = world["account"], world["members"]
    customer = make_customer(account, name="phishing target", email="outsider@evil.example",
                             assigned=members[assigned_to] if assigned_to else None)
    auth.login_member(members[Role.USER])
    page = BeautifulSoup(client.get(f"/customers/{customer.id}").get_data(as_text=True), "html.parser")
    assert page.find("form", {"action": "/automations/enroll"}) is None
    assert "本人かマネージャー以上のユーザーです" in page.find(id="automations").get_text()
    response = client.post(f"/automations/{world['sequence'].id}/enroll", data={"customer_id": customer.id})
    assert response.status_code == 403
    text = response.get_data(as_text=True)
    if assigned_to:
        assert f"このお客様の担当者は{members[Role.OWNER].user.name}さんです。" in text
    else:
        assert "担当者が設定されていないお客様を登録できるのは、マネージャー以上のユーザーです。" in text
    assert enrollments_of(customer) == []


def test_managers_enrol_any_customer(client, auth, world):
    """A manager enrols a customer looked after by someone else."""
    customer = make_customer(world["account"], email="sato@client.example", assigned=world["members"][Role.OWNER])
    auth.login_member(world["members"][Role.MANAGER])
    response = client.post(f"/automations/{world['sequence'].id}/enroll", data={"customer_id": customer.id})
    assert response.status_code == 302
    assert [e.state for e in enrollments_of(customer)] == [EnrollmentState.ACTIVE]
