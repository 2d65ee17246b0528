"""メールテンプレート: list, create, edit, delete, placeholders, shared vs personal and account scoping."""
import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.extensions import db
from portal.mailtemplates.services import TemplateData, create_template
from portal.models import (AuditLog, Direction, MailDraft, MailMessage, MailTemplate, Role, Sequence, SequenceStep,
                           utcnow)
from tests.factories import make_account, make_member

GOOD = {"name": "お問い合わせのお礼", "subject": "{{会社名}} {{顧客名}}様 お問い合わせありがとうございます",
        "body": "{{顧客名}}様\r\n\r\nお問い合わせありがとうございます。\r\n担当の{{担当者名}}です。"}
NOT_EDITABLE = "このテンプレートを編集する権限がありません。"
IN_USE = "このテンプレートはセールスオートメーションで使用中のため削除できません。"


@pytest.fixture
def team(app):
    """Account A with one member per role plus a second plain user; account B with its owner."""
    account, owner = make_account("A社")
    members = {"owner": owner, "admin": make_member(account, Role.ADMIN),
               "manager": make_member(account, Role.MANAGER), "user": make_member(account, Role.USER),
               "colleague": make_member(account, Role.USER)}
    _, other_owner = make_account("B社")
    members["other_owner"] = other_owner
    return members


def make_template(member, name="テンプレート", shared=False, subject="件名", body="本文") -> MailTemplate:
    """A template created through the real service by the member."""
    return create_template(db.session, member, TemplateData(name=name, subject=subject, body=body, shared=shared))


def stored(template_id: int) -> MailTemplate | None:
    """The template as it is in the database now."""
    db.session.expire_all()
    return db.session.get(MailTemplate, template_id)


def all_templates() -> list[MailTemplate]:
    """Every template in the database."""
    db.session.expire_all()
    return list(db.session.scalars(select(MailTemplate).order_by(MailTemplate.id)))


def field_errors(html: str, name: str) -> list[str]:
    """The error texts shown beside the named form field."""
    control = BeautifulSoup(html, "html.parser").find(attrs={"name": name})
    return [error.get_text(strip=True) for error in control.find_parent(class_="mb-3").select(".invalid-feedback")]


def rows(html: str) -> dict[str, BeautifulSoup]:
    """The list's table rows keyed by template name."""
    page = BeautifulSoup(html, "html.parser")
    return {row.select_one("td").get_text(strip=True): row for row in page.select("tbody tr") if row.select_one("a")}


def test_create_shows_placeholders_and_the_template_appears_in_the_list(client, auth, team):
    """The form lists the placeholders; the saved template is listed as the member's own, with an audit entry."""
    user = team["user"]
    auth.login_member(user)
    form = client.get("/templates/new").get_data(as_text=True)
    assert "使える差し込み項目" in form
    assert "{{顧客名}}" in form and "お客様のお名前" in form and "送信するユーザーの名前" in form
    response = client.post("/templates/new", data=GOOD, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "テンプレート「お問い合わせのお礼」を作成しました。" in page
    row = rows(page)["お問い合わせのお礼"]
    assert "個人" in row.get_text() and user.user.name in row.get_text()
    assert "{{会社名}} {{顧客名}}様 お問い合わせありがとうございます" in row.get_text()
    [template] = all_templates()
    assert template.owner_membership_id == user.id
    assert template.body == "{{顧客名}}様\n\nお問い合わせありがとうございます。\n担当の{{担当者名}}です。"
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.target_type == "template",
                                                           AuditLog.target_id == template.id)) == "template.create"


def test_menu_has_templates_and_marks_it_active(client, auth, team):
    """The navigation offers メールテンプレート and highlights it on its screens."""
    auth.login_member(team["user"])
    page = BeautifulSoup(client.get("/templates").get_data(as_text=True), "html.parser")
    link = page.select_one("nav a.nav-link[href='/templates']")
    assert "メールテンプレート" in link.get_text() and "active" in link["class"]
    assert "新規作成" in page.get_text()


@pytest.mark.parametrize("field", ["subject", "body"])
@pytest.mark.parametrize("written,shown", [("{{foo}}", "{{foo}}"), ("{{ 顧客 }}様", "{{顧客}}")])
def test_unknown_placeholder_is_an_error_beside_its_field(client, auth, team, field, written, shown):
    """An unknown placeholder is explained beside the field that has it, with the usable ones; nothing is saved."""
    auth.login_member(team["user"])
    response = client.post("/templates/new", data=dict(GOOD, **{field: GOOD[field] + written}))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_errors(html, field) == [
        f"不明な差し込み項目 {shown} があります。使えるのは {{{{顧客名}}}}・{{{{会社名}}}}・{{{{担当者名}}}} です。"]
    other = "body" if field == "subject" else "subject"
    assert field_errors(html, other) == []
    assert all_templates() == []


def test_lone_braces_are_accepted(client, auth, team):
    """Ordinary braces in the text are not mistaken for placeholders."""
    auth.login_member(team["user"])
    response = client.post("/templates/new", data=dict(GOOD, subject="【ご案内】{重要}", body="価格は { 税込 } です。"))
    assert response.status_code == 302
    assert all_templates()[0].subject == "【ご案内】{重要}"


@pytest.mark.parametrize("change,field,message", [
    ({"name": ""}, "name", "入力してください。"),
    ({"name": "あ" * 101}, "name", "100文字以内で入力してください。"),
    ({"subject": "件" * 256}, "subject", "255文字以内で入力してください。"),
    ({"body": "  \r\n "}, "body", "入力してください。"),
])
def test_missing_or_too_long_values_are_japanese_errors(client, auth, team, change, field, message):
    """Required and length rules are explained in Japanese beside the field; nothing is saved."""
    auth.login_member(team["user"])
    response = client.post("/templates/new", data=dict(GOOD, **change))
    assert response.status_code == 422
    assert message in field_errors(response.get_data(as_text=True), field)
    assert all_templates() == []


def test_plain_user_cannot_create_a_shared_template(client, auth, team):
    """A plain user gets no 共有 checkbox, and a forged one still saves a personal template."""
    user = team["user"]
    auth.login_member(user)
    assert "共有テンプレートにする" not in client.get("/templates/new").get_data(as_text=True)
    assert client.post("/templates/new", data=dict(GOOD, shared="y")).status_code == 302
    [template] = all_templates()
    assert template.owner_membership_id == user.id


def test_manager_creates_a_shared_template(client, auth, team):
    """A manager ticks 「共有テンプレートにする」 and the list shows it as 共有."""
    auth.login_member(team["manager"])
    assert "共有テンプレートにする" in client.get("/templates/new").get_data(as_text=True)
    page = client.post("/templates/new", data=dict(GOOD, shared="y"), follow_redirects=True).get_data(as_text=True)
    assert "共有" in rows(page)["お問い合わせのお礼"].select_one(".badge").get_text()
    assert all_templates()[0].owner_membership_id is None


def test_plain_user_edits_only_own_templates(client, auth, team):
    """Pen and trash appear on one's own template only; shared and a colleague's template answer 403."""
    user = team["user"]
    shared = make_template(team["manager"], "共有のお礼", shared=True)
    colleagues = make_template(team["colleague"], "同僚のお礼")
    own = make_template(user, "自分のお礼")
    auth.login_member(user)
    listing = rows(client.get("/templates").get_data(as_text=True))
    assert set(listing) == {"共有のお礼", "同僚のお礼", "自分のお礼"}
    assert listing["自分のお礼"].select("i.bi-pencil") and listing["自分のお礼"].select("i.bi-trash")
    for name in ("共有のお礼", "同僚のお礼"):
        assert not listing[name].select("i.bi-pencil") and not listing[name].select("i.bi-trash")
    for template in (shared, colleagues):
        for response in (client.get(f"/templates/{template.id}/edit"),
                         client.post(f"/templates/{template.id}/edit", data=dict(GOOD, name="書き換え")),
                         client.get(f"/templates/{template.id}/delete"),
                         client.post(f"/templates/{template.id}/delete")):
            assert response.status_code == 403
            assert NOT_EDITABLE in response.get_data(as_text=True)
        assert stored(template.id).name != "書き換え"
    form = client.get(f"/templates/{own.id}/edit").get_data(as_text=True)
    assert "自分のお礼" in form and "共有テンプレートにする" not in form
    response = client.post(f"/templates/{own.id}/edit", data=dict(GOOD, name="自分のお礼（改）"), follow_redirects=True)
    assert "テンプレート「自分のお礼（改）」を保存しました。" in response.get_data(as_text=True)
    assert stored(own.id).name == "自分のお礼（改）" and stored(own.id).owner_membership_id == user.id


@pytest.mark.parametrize("role", ["owner", "admin", "manager"])
def test_managers_and_up_edit_shared_and_members_templates(client, auth, team, role):
    """Managers and above change shared templates and a member's own; the member stays its owner."""
    shared = make_template(team["owner"], "共有のお礼", shared=True)
    personal = make_template(team["user"], "ユーザーのお礼")
    auth.login_member(team[role])
    form = BeautifulSoup(client.get(f"/templates/{shared.id}/edit").get_data(as_text=True), "html.parser")
    assert form.find("input", {"name": "shared"}).has_attr("checked")
    assert client.post(f"/templates/{shared.id}/edit", data=dict(GOOD, name="共有（改）", shared="y")).status_code == 302
    assert client.post(f"/templates/{personal.id}/edit", data=dict(GOOD, name="個人（改）")).status_code == 302
    assert (stored(shared.id).name, stored(shared.id).owner_membership_id) == ("共有（改）", None)
    assert (stored(personal.id).name, stored(personal.id).owner_membership_id) == ("個人（改）", team["user"].id)


def test_manager_can_share_a_personal_template(client, auth, team):
    """Ticking 共有 on a member's template makes it shared for the whole account."""
    personal = make_template(team["user"], "ユーザーのお礼")
    auth.login_member(team["manager"])
    client.post(f"/templates/{personal.id}/edit", data=dict(GOOD, shared="y"))
    assert stored(personal.id).owner_membership_id is None


@pytest.mark.parametrize("role", ["owner", "admin", "manager", "user"])
@pytest.mark.parametrize("method,path", [("GET", ""), ("GET", "/edit"), ("POST", "/edit"), ("GET", "/delete"),
                                         ("POST", "/delete")])
def test_another_accounts_template_does_not_exist(client, auth, team, role, method, path):
    """Whatever the role, another account's template is 404 and stays unchanged."""
    foreign = make_template(team["other_owner"], "B社のお礼", shared=True)
    auth.login_member(team[role])
    url = f"/templates/{foreign.id}{path}"
    response = client.get(url) if method == "GET" else client.post(url, data=dict(GOOD, name="乗っ取り"))
    assert response.status_code == 404
    assert "ページが見つかりません" in response.get_data(as_text=True)
    assert stored(foreign.id).name == "B社のお礼"
    assert "B社のお礼" not in client.get("/templates").get_data(as_text=True)


def test_delete_through_the_confirmation_screen(client, auth, team):
    """The trash icon leads to 「はい、削除します」; confirming removes the template and records it."""
    own_id = make_template(team["user"], "不要なお礼").id
    auth.login_member(team["user"])
    listing = rows(client.get("/templates").get_data(as_text=True))
    trash = listing["不要なお礼"].select_one("a:has(i.bi-trash)")["href"]
    confirm = client.get(trash).get_data(as_text=True)
    assert "はい、削除します" in confirm and "不要なお礼" in confirm
    assert stored(own_id) is not None
    response = client.post(trash, follow_redirects=True)
    assert "テンプレート「不要なお礼」を削除しました。" in response.get_data(as_text=True)
    assert stored(own_id) is None
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.target_type == "template",
                                                           AuditLog.target_id == own_id,
                                                           AuditLog.action == "template.delete")) is not None


def test_delete_is_refused_while_a_sales_automation_uses_it(client, auth, team):
    """A template sent by a sequence step cannot be deleted: the screen says why and which automation; 409."""
    used = make_template(team["manager"], "フォローアップ1", shared=True)
    sequence = Sequence(account_id=used.account_id, name="新規リード育成")
    sequence.steps.append(SequenceStep(position=0, wait_days=3, template_id=used.id))
    db.session.add(sequence)
    db.session.commit()
    auth.login_member(team["manager"])
    confirm = client.get(f"/templates/{used.id}/delete").get_data(as_text=True)
    assert IN_USE in confirm and "新規リード育成" in confirm and "はい、削除します" not in confirm
    response = client.post(f"/templates/{used.id}/delete")
    assert response.status_code == 409
    assert IN_USE in response.get_data(as_text=True)
    assert stored(used.id) is not None
    assert db.session.scalar(select(AuditLog.id).where(AuditLog.action == "template.delete")) is None


def test_deleting_a_template_keeps_reply_drafts(client, auth, team):
    """A reply draft started from the template survives its deletion, with its text intact."""
    own = make_template(team["user"], "返信用")
    message = MailMessage(account_id=own.account_id, message_key="k1", direction=Direction.RECEIVED,
                          received_at=utcnow())
    db.session.add(message)
    db.session.flush()
    draft = MailDraft(account_id=own.account_id, membership_id=team["user"].id, reply_to_message_id=message.id,
                      subject="Re: ご相談", body="書きかけの返信", template_id=own.id)
    db.session.add(draft)
    db.session.commit()
    own_id, draft_id = own.id, draft.id
    auth.login_member(team["user"])
    assert client.post(f"/templates/{own_id}/delete").status_code == 302
    db.session.expire_all()
    kept = db.session.get(MailDraft, draft_id)
    assert stored(own_id) is None and kept.body == "書きかけの返信" and kept.template_id is None


def test_every_member_previews_any_template(client, auth, team):
    """A plain user opens a shared template and sees it with sample values filled in, without edit buttons."""
    shared = make_template(team["manager"], "共有のお礼", shared=True, subject=GOOD["subject"], body=GOOD["body"])
    auth.login_member(team["user"])
    response = client.get(f"/templates/{shared.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "株式会社サンプル 山田 太郎様 お問い合わせありがとうございます" in page
    assert f"担当の{team['user'].user.name}です。" in page
    assert "bi-pencil" not in BeautifulSoup(page, "html.parser").select_one("main").decode()


def test_long_lists_are_paginated(client, auth, team):
    """More templates than fit on a page continue on page 2."""
    for number in range(21):
        make_template(team["user"], f"テンプレート{number:02d}")
    auth.login_member(team["user"])
    first = client.get("/templates").get_data(as_text=True)
    assert "全21件" in first and "テンプレート00" in first and "テンプレート20" not in first
    assert "テンプレート20" in client.get("/templates?page=2").get_data(as_text=True)


def test_anonymous_visitors_are_sent_to_login(client, team):
    """Without signing in the templates screens redirect to the login page."""
    template = make_template(team["owner"], "共有", shared=True)
    for path in ("/templates", "/templates/new", f"/templates/{template.id}", f"/templates/{template.id}/edit"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
