"""Every route x every role x own/other account answers as the policy says."""
from dataclasses import dataclass, field

import pytest

from portal.extensions import db
from portal.presets.services import PresetData, create_preset
from portal.mailtemplates.services import TemplateData, create_template
from portal.models import Enrollment, MailAttachment, Role, Security, Sequence, SequenceStep, utcnow
from portal.users.services import invite_member
from tests.factories import enable_email, make_account, make_customer, make_link, make_member, make_message

ROLES = ["owner", "admin", "manager", "user"]
ALL = dict.fromkeys(ROLES, 200)


def only(allowed: set[str], ok: int = 200) -> dict[str, int]:
    """`ok` for the allowed roles, 403 for the rest."""
    return {role: ok if role in allowed else 403 for role in ROLES}


PRESET = {"name": "社内", "imap_host": "imap.example.jp", "imap_port": "993", "imap_security": "ssl",
          "smtp_host": "smtp.example.jp", "smtp_port": "587", "smtp_security": "starttls"}
OAUTH_PRESET = dict(PRESET, auth_method="oauth2", oauth_provider="google", oauth_client_id="client.apps.example",
                    oauth_client_secret="client-secret", imap_host="", imap_port="", smtp_host="", smtp_port="")
OWNERS = {"owner"}
ADMINS = {"owner", "admin"}
MANAGERS = {"owner", "admin", "manager"}
EVERYONE = set(ROLES)


@dataclass
class Case:
    """One route: method, path with {placeholders}, form data and the expected status per role."""

    method: str
    path: str
    expected: dict[str, int]
    data: dict = field(default_factory=dict)
    # With another account's ids: 404 unless the id is a form choice, which is refused beside the field (422).
    other_expected: dict[str, int] | None = None


CASES = [
    Case("GET", "/", ALL),
    Case("GET", "/customers", ALL),
    Case("GET", "/customers?q=顧客&page=2", ALL),
    Case("GET", "/customers/new", ALL),
    Case("POST", "/customers/new", only(EVERYONE, 302),
         {"name": "新規 顧客", "email": "new@client.example", "company": "", "assigned_user_id": ""}),
    Case("GET", "/customers/{customer}", ALL),
    Case("GET", "/customers/{customer}/edit", ALL),
    Case("POST", "/customers/{customer}/edit", only(EVERYONE, 302),
         {"name": "変更後", "email": "changed@client.example", "company": "", "assigned_user_id": ""}),
    Case("GET", "/customers/{customer}/delete", only(MANAGERS)),
    Case("POST", "/customers/{customer}/delete", only(MANAGERS, 302)),
    Case("GET", "/mails", ALL),
    Case("GET", "/mails?customer={customer}", ALL),
    Case("GET", "/mails/{mail}", ALL),
    Case("GET", "/mails/{mail}/reply", ALL),
    Case("POST", "/mails/{mail}/reply", only(EVERYONE, 422), {"to": "", "subject": "", "body": "", "action": "send"}),
    Case("GET", "/mails/attachments/{attachment}", ALL),
    Case("GET", "/templates", ALL),
    Case("GET", "/templates/new", ALL),
    Case("POST", "/templates/new", only(EVERYONE, 302), {"name": "新テンプレート", "subject": "件名", "body": "本文"}),
    Case("GET", "/templates/{template}", ALL),
    Case("GET", "/templates/{template}/edit", only(MANAGERS)),
    Case("POST", "/templates/{template}/edit", only(MANAGERS, 302), {"name": "共有", "subject": "件名", "body": "本文",
                                                                    "shared": "y"}),
    Case("GET", "/templates/{template}/delete", only(MANAGERS)),
    Case("POST", "/templates/{template}/delete", only(MANAGERS, 409)),  # a sequence step uses it
    Case("GET", "/automations", ALL),
    Case("GET", "/automations/new", only(MANAGERS)),
    Case("POST", "/automations/new", only(MANAGERS, 302),
         {"name": "フォロー", "stop_on_reply": "y", "steps-0-wait_days": "1", "steps-0-template_id": "{template}"},
         other_expected=only(MANAGERS, 422)),
    Case("GET", "/automations/{sequence}", ALL),
    Case("GET", "/automations/{sequence}/edit", only(MANAGERS)),
    Case("POST", "/automations/{sequence}/edit", only(MANAGERS, 302), {"name": "変更後", "steps-0-wait_days": "2",
                                                                       "steps-0-template_id": "{template}"}),
    Case("GET", "/automations/{sequence}/delete", only(MANAGERS)),
    Case("POST", "/automations/{sequence}/delete", only(MANAGERS, 409)),  # a customer is still running it
    Case("POST", "/automations/{sequence}/enroll", only(EVERYONE, 302), {"customer_id": "{customer}"}),
    Case("POST", "/automations/enroll", only(EVERYONE, 302),
         {"sequence_id": "{sequence}", "customer_id": "{customer}"}),
    Case("POST", "/automations/enrollments/{enrollment}/stop", only(EVERYONE, 302)),
    Case("GET", "/settings", ALL),
    Case("GET", "/settings/account", only(ADMINS)),
    Case("POST", "/settings/account", only(ADMINS, 302), {"name": "新社名", "viewing_restricted": "y"}),
    Case("GET", "/settings/audit", only(ADMINS)),
    Case("GET", "/settings/users", only(ADMINS)),
    Case("GET", "/settings/users/new", only(ADMINS)),
    Case("POST", "/settings/users/new", only(ADMINS, 200),  # the page with the invitation link
         {"email": "newcomer@example.jp", "name": "新人", "role": "user"}),
    Case("POST", "/settings/users/invitations/{invitation}/link", only(ADMINS)),
    Case("GET", "/settings/users/invitations/{invitation}/cancel", only(ADMINS)),
    Case("POST", "/settings/users/invitations/{invitation}/cancel", only(ADMINS, 302)),
    Case("GET", "/settings/users/{member}/reset-link", only(ADMINS)),
    Case("POST", "/settings/users/{member}/reset-link", only(ADMINS)),  # the page with the reset link
    Case("GET", "/password", ALL),
    Case("POST", "/password", only(EVERYONE, 422), {"current_password": "", "password": "", "password_confirm": ""}),
    Case("POST", "/settings/users/{member}/role", only(ADMINS, 302), {"role": "manager"}),
    Case("GET", "/settings/users/{member}/disable", only(ADMINS)),
    Case("POST", "/settings/users/{member}/disable", only(ADMINS, 302)),
    Case("POST", "/settings/users/{member}/enable", only(ADMINS, 302)),
    Case("GET", "/settings/users/{member}/delete", only(ADMINS)),
    Case("POST", "/settings/users/{member}/delete", only(ADMINS, 302)),
    Case("GET", "/settings/features", only(ADMINS)),
    Case("GET", "/settings/features/email/off", only(ADMINS)),
    Case("POST", "/settings/features/email/off", only(ADMINS, 302), {"agree_unlink": "y"}),
    Case("GET", "/settings/mailbox-servers", ALL),
    Case("GET", "/settings/mailbox-servers/new", only(MANAGERS)),
    Case("POST", "/settings/mailbox-servers/new", only(MANAGERS, 302), PRESET),
    Case("POST", "/settings/mailbox-servers/new", only(MANAGERS, 302), OAUTH_PRESET),
    Case("GET", "/settings/mailbox-servers/{preset}/edit", only(MANAGERS)),
    Case("POST", "/settings/mailbox-servers/{preset}/edit", only(MANAGERS, 302), OAUTH_PRESET),
    Case("POST", "/settings/mailbox-servers/{preset}/edit", only(MANAGERS, 302), PRESET),
    Case("GET", "/settings/mailbox-servers/{preset}/delete", only(MANAGERS)),
    Case("POST", "/settings/mailbox-servers/{preset}/delete", only(MANAGERS, 302)),
    Case("GET", "/settings/mailbox", ALL),
    Case("GET", "/settings/mailbox/unlink", ALL),
    Case("POST", "/settings/mailbox/sync", only(EVERYONE, 302)),
    Case("GET", "/settings/mailbox/links", only(ADMINS)),
    Case("GET", "/settings/mailbox/links/{link}", only(ADMINS)),
    Case("POST", "/settings/mailbox/reauth", only(EVERYONE, 422), {"imap_password": ""}),
    Case("POST", "/settings/mailbox/unlink", only(EVERYONE, 302)),
    # Every member may start a sign-in; here each is linked already and goes back to the status page.
    Case("POST", "/settings/mailbox/oauth/start", only(EVERYONE, 302), {"preset_id": ""}),
    Case("GET", "/settings/mailbox/oauth/callback", only(EVERYONE, 400)),
    Case("GET", "/settings/account/disable", only(OWNERS)),
    Case("POST", "/settings/account/cancel", only(OWNERS, 302)),
]


@pytest.fixture
def world(app):
    """Account A with one member per role, a customer and a target member; account B likewise."""
    account, owner = make_account("A社")
    members = {"owner": owner}
    for role in ("admin", "manager", "user"):
        members[role] = make_member(account, Role(role))
    target = make_member(account, Role.USER)
    customer = make_customer(account, assigned=members["user"])
    other_account, other_owner = make_account("B社")
    other_member = make_member(other_account, Role.USER)
    other_customer = make_customer(other_account)
    presets = {}
    for company, owner_of in ((account, owner), (other_account, other_owner)):
        enable_email(company, owner_of)
        presets[company.id] = create_preset(db.session, owner_of, PresetData(
            "社内", "imap.example.jp", 993, Security.SSL, "smtp.example.jp", 587, Security.STARTTLS)).id
    own_links = [make_link(member) for member in members.values()]
    other_link = make_link(other_member)
    return {
        "members": members,
        "own": {"customer": customer.id, "member": target.id, "preset": presets[account.id],
                "link": own_links[-1].id, **_mail_objects(account, owner, customer)},
        "other": {"customer": other_customer.id, "member": other_member.id, "preset": presets[other_account.id],
                  "link": other_link.id, **_mail_objects(other_account, other_owner, other_customer)},
    }


def _mail_objects(account, owner, customer) -> dict:
    """A message with an attachment, a shared template used by a sequence, and a running enrolment."""
    attachment = MailAttachment(filename="資料.pdf", content_type="application/pdf", size_bytes=4, content=b"%PDF")
    message = make_message(account, [customer], attachments=[attachment])
    template = create_template(db.session, owner, TemplateData("共有", "件名", "本文", shared=True))
    sequence = Sequence(account_id=account.id, name="フォロー", steps=[SequenceStep(position=0, wait_days=1,
                                                                                 template_id=template.id)])
    db.session.add(sequence)
    db.session.flush()
    enrollment = Enrollment(account_id=account.id, sequence_id=sequence.id, customer_id=make_customer(account).id,
                            started_at=utcnow(), next_due_at=utcnow())
    db.session.add(enrollment)
    db.session.commit()
    invitation, _ = invite_member(db.session, owner, f"invited{account.id}@example.jp", "招待", Role.USER, utcnow(), 7)
    return {"mail": message.id, "attachment": attachment.id, "template": template.id, "sequence": sequence.id,
            "enrollment": enrollment.id, "invitation": invitation.id}


def _request(client, case: Case, ids: dict):
    """Send the case's request with its placeholders filled."""
    path = case.path.format(**ids)
    if case.method == "GET":
        return client.get(path)
    return client.post(path, data={key: value.format(**ids) for key, value in case.data.items()})


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_own_account(client, auth, world, case, role):
    """Inside one's own account the policy decides: 200/302 when allowed, 403 otherwise."""
    auth.login_member(world["members"][role])
    response = _request(client, case, world["own"])
    assert response.status_code == case.expected[role]
    if response.status_code == 403:
        assert "権限がありません" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", [c for c in CASES if "{" in c.path + "".join(c.data.values())],
                         ids=lambda c: f"{c.method} {c.path}")
def test_other_account_object_is_404(client, auth, world, case, role):
    """Another account's object does not exist for anyone, whatever their role."""
    auth.login_member(world["members"][role])
    response = _request(client, case, world["other"])
    if case.other_expected is not None:
        assert response.status_code == case.other_expected[role]
        return
    assert response.status_code == 404
    assert "ページが見つかりません" in response.get_data(as_text=True)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_anonymous_is_sent_to_login(client, world, case):
    """Without signing in every screen redirects to the login page."""
    response = _request(client, case, world["own"])
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("role,visible", [("owner", True), ("admin", True), ("manager", False), ("user", False)])
def test_settings_hub_shows_only_allowed_links(client, auth, world, role, visible):
    """Forbidden settings are not even offered as links."""
    auth.login_member(world["members"][role])
    page = client.get("/settings").get_data(as_text=True)
    assert ("/settings/users" in page) == visible
    assert ("/settings/account" in page) == visible


@pytest.mark.parametrize("role,shows_trash", [("owner", True), ("manager", True), ("user", False)])
def test_delete_icon_only_for_roles_that_may_delete(client, auth, world, role, shows_trash):
    """The trash icon on the customer list appears only for roles that may delete."""
    auth.login_member(world["members"][role])
    page = client.get("/customers").get_data(as_text=True)
    assert ("bi-trash" in page) == shows_trash
    assert "bi-pencil" in page
