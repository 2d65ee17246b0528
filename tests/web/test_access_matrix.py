"""Every route x every role x own/other account answers as the policy says."""
from dataclasses import dataclass, field

import pytest

from portal.extensions import db
from portal.mailservers.services import PresetData, create_preset
from portal.models import Role, Security
from tests.factories import enable_email, make_account, make_customer, make_link, make_member

ROLES = ["owner", "admin", "manager", "user"]
ALL = dict.fromkeys(ROLES, 200)


def only(allowed: set[str], ok: int = 200) -> dict[str, int]:
    """`ok` for the allowed roles, 403 for the rest."""
    return {role: ok if role in allowed else 403 for role in ROLES}


PRESET = {"name": "社内", "imap_host": "imap.example.jp", "imap_port": "993", "imap_security": "ssl",
          "smtp_host": "smtp.example.jp", "smtp_port": "587", "smtp_security": "starttls"}
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
    Case("GET", "/settings", ALL),
    Case("GET", "/settings/account", only(ADMINS)),
    Case("POST", "/settings/account", only(ADMINS, 302), {"name": "新社名", "viewing_restricted": "y"}),
    Case("GET", "/settings/audit", only(ADMINS)),
    Case("GET", "/settings/users", only(ADMINS)),
    Case("GET", "/settings/users/new", only(ADMINS)),
    Case("POST", "/settings/users/new", only(ADMINS, 302),
         {"email": "newcomer@example.jp", "name": "新人", "role": "user", "password": "long-enough-pw"}),
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
    Case("GET", "/settings/mailbox-servers/{preset}/edit", only(MANAGERS)),
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
    Case("GET", "/settings/account/disable", only(ADMINS)),
    Case("POST", "/settings/account/cancel", only(ADMINS, 302)),
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
                "link": own_links[-1].id},
        "other": {"customer": other_customer.id, "member": other_member.id, "preset": presets[other_account.id],
                  "link": other_link.id},
    }


def _request(client, case: Case, ids: dict):
    """Send the case's request with its placeholders filled."""
    path = case.path.format(**ids)
    if case.method == "GET":
        return client.get(path)
    return client.post(path, data=case.data)


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
@pytest.mark.parametrize("case", [c for c in CASES if "{" in c.path], ids=lambda c: f"{c.method} {c.path}")
def test_other_account_object_is_404(client, auth, world, case, role):
    """Another account's object does not exist for anyone, whatever their role."""
    auth.login_member(world["members"][role])
    response = _request(client, case, world["other"])
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
