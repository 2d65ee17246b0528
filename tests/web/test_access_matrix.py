"""Every route x every role x own/other account answers as the policy says.

The routes come from the app's url_map: a route (each method, each value of an <any(...)> part) without a
case in CASES fails `test_route_has_a_matrix_case`, so a new screen cannot ship without saying who may use it.
"""
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from string import Formatter
from urllib.parse import urlsplit

import pytest
from flask import current_app
from werkzeug.exceptions import HTTPException
from werkzeug.routing.converters import AnyConverter

from portal import create_app
from portal.extensions import db
from portal.mails.services import inline_image_token
from portal.presets.services import PresetData, create_preset
from portal.mailtemplates.services import TemplateData, create_template
from portal.models import (Direction, Enrollment, MailAttachment, MailMessage, MailThread, Membership, Role, Security,
                           Sequence, SequenceStep, TrackedLink, utcnow)
from portal.tracking.tokens import click_token, new_tracking_id, open_token
from portal.users.services import invite_member, issue_reset_link
from tests.factories import enable_email, make_account, make_customer, make_link, make_member, make_message

ROLES = ["owner", "admin", "manager", "user"]
LOGIN = "login"  # anonymous visitors are sent to the login page
OWNERS = {"owner"}
ADMINS = {"owner", "admin"}
MANAGERS = {"owner", "admin", "manager"}
EVERYONE = set(ROLES)


def only(allowed: set[str], ok: int = 200) -> dict[str, int | str]:
    """`ok` for the allowed roles, 403 for the rest; anonymous visitors go to the login page."""
    return {**{role: ok if role in allowed else 403 for role in ROLES}, "anonymous": LOGIN}


def public(member: int, anonymous: int | None = None) -> dict[str, int | str]:
    """A page without login: `member` for every signed-in role, `anonymous` (default the same) for visitors."""
    return {**dict.fromkeys(ROLES, member), "anonymous": member if anonymous is None else anonymous}


ALL = only(EVERYONE)

PRESET = {"name": "社内", "imap_host": "imap.example.jp", "imap_port": "993", "imap_security": "ssl",
          "smtp_host": "smtp.example.jp", "smtp_port": "587", "smtp_security": "starttls"}
OAUTH_PRESET = dict(PRESET, auth_method="oauth2", oauth_provider="google", oauth_client_id="client.apps.example",
                    oauth_client_secret="client-secret", imap_host="", imap_port="", smtp_host="", smtp_port="")


@dataclass
class Case:
    """One request: method, path with {placeholders}, form data and the expected status per role and anonymous.

    Placeholders name the world's objects (see `world`), or what `prepare(world, member)` returns for routes
    that need more setup (tokens, an invitation to the signed-in person); `member` is None for anonymous.
    """

    method: str
    path: str
    expected: dict[str, int | str]
    data: dict = field(default_factory=dict)
    # With another account's ids: 404 unless the id is a form choice, which is refused beside the field (422).
    other_expected: dict[str, int] | None = None
    prepare: Callable[[dict, Membership | None], dict] | None = None


def invitation_link(world: dict, member: Membership | None) -> dict:
    """A pending invitation into account A for a new address, and its link token."""
    _, token = invite_member(db.session, world["members"]["owner"], "joining@example.jp", "参加予定", Role.USER,
                             utcnow(), 7)
    return {"invitation_token": token}


def invitation_to_me(world: dict, member: Membership | None) -> dict:
    """Account B invites the signed-in person (or, for anonymous, some address)."""
    email = member.user.email if member is not None else "someone@example.jp"
    invitation, _ = invite_member(db.session, world["other_owner"], email, "招待", Role.USER, utcnow(), 7)
    return {"my_invitation": invitation.id}


def reset_link(world: dict, member: Membership | None) -> dict:
    """A one-time password reset link that account A's owner issued for its target member."""
    target = db.session.get(Membership, world["own"]["member"])
    token, _ = issue_reset_link(db.session, world["members"]["owner"], target, utcnow(), 1)
    return {"reset_token": token}


def tracked_mail(world: dict, member: Membership | None) -> dict:
    """The open and click tokens of a tracked mail that account A sent."""
    owner = world["members"]["owner"]
    thread = MailThread(account_id=owner.account_id, subject_key="ご案内")
    db.session.add(thread)
    db.session.flush()
    sent = MailMessage(account_id=owner.account_id, message_key=f"mid:sent{thread.id}@example.jp", thread=thread,
                       direction=Direction.SENT, subject="ご案内", received_at=utcnow(), tracked=True, tracking_id=new_tracking_id(),
                       membership_id=owner.id, sent_by_membership_id=owner.id)
    db.session.add(sent)
    db.session.flush()
    link = TrackedLink(message_id=sent.id, position=0, url="https://example.jp/price")
    db.session.add(link)
    db.session.commit()
    secret = current_app.config["SECRET_KEY"]
    return {"open_token": open_token(secret, sent.tracking_id), "click_token": click_token(secret, sent.tracking_id, 0)}


def inline_signature(world: dict, member: Membership | None) -> dict:
    """The signature account A's mail frame carries for its inline image (it names account and file)."""
    owner = world["members"]["owner"]
    return {"image_sig": inline_image_token(current_app.config["SECRET_KEY"], owner.account_id,
                                            world["own"]["image"])}


CASES = [
    Case("GET", "/", ALL),
    Case("GET", "/static/css/portal.css", public(200)),
    Case("GET", "/login", public(302, anonymous=200)),  # signed in already: to the home screen
    Case("POST", "/login", public(302, anonymous=422), {"email": "", "password": ""}),
    Case("POST", "/logout", public(302, anonymous=LOGIN)),
    Case("GET", "/accounts/select", ALL),
    Case("POST", "/accounts/select", only(EVERYONE, 422), {"membership_id": ""}),
    Case("POST", "/accounts/invitations/{my_invitation}/decline", only(EVERYONE, 302), prepare=invitation_to_me),
    # An invitation addressed to someone else does not exist for the signed-in person.
    Case("POST", "/accounts/invitations/{invitation}/decline", only(EVERYONE, 404)),
    Case("GET", "/invitations/{invitation_token}", public(200), prepare=invitation_link),
    Case("POST", "/invitations/{invitation_token}", public(422), {"password": ""}, prepare=invitation_link),
    Case("GET", "/password/reset/{reset_token}", public(200), prepare=reset_link),
    Case("POST", "/password/reset/{reset_token}", public(422), {"password": "", "password_confirm": ""},
         prepare=reset_link),
    Case("GET", "/t/o/{open_token}", public(200), prepare=tracked_mail),
    Case("GET", "/t/c/{click_token}", public(302), prepare=tracked_mail),
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
    Case("GET", "/mails/{mail}/delete", only(MANAGERS)),
    Case("POST", "/mails/{mail}/delete", only(MANAGERS, 302)),
    Case("GET", "/mails/{mail}/delete-thread", only(MANAGERS)),
    Case("POST", "/mails/{mail}/delete-thread", only(MANAGERS, 302)),
    Case("GET", "/mails/attachments/{attachment}", ALL),
    # The sandboxed mail frame sends no cookie: the signature alone opens the image, and only the one it names.
    Case("GET", "/mails/attachments/{image}/inline?sig={image_sig}", public(200), prepare=inline_signature),
    Case("GET", "/mails/new", ALL),
    Case("GET", "/mails/new?customer={customer}", ALL),
    # Another account's customer is no choice of the form: refused beside the field.
    Case("POST", "/mails/new", only(EVERYONE, 422), {"customer_id": "{customer}", "subject": "", "body": "",
                                                     "action": "send"}, other_expected=only(EVERYONE, 422)),
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
    Case("GET", "/settings/features/email/on", only(ADMINS)),
    Case("POST", "/settings/features/email/on", only(ADMINS, 302), {"agree_billing": "y", "agree_storage": "y"}),
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
    Case("POST", "/settings/mailbox", ALL, {"preset_id": ""}),  # linked already: the status page again
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
    Case("POST", "/settings/account/disable", only(OWNERS, 302)),
    Case("GET", "/settings/account/cancel", only(OWNERS)),
    Case("POST", "/settings/account/cancel", only(OWNERS, 302)),
]

MATRIX_FILE = "tests/web/test_access_matrix.py"
ANY_PART = re.compile(r"<any\([^)]*\):(\w+)>")
# Placeholders naming the world's objects: with another account's ids these cases must answer 404.
OBJECTS = {"customer", "member", "preset", "link", "mail", "attachment", "image", "template", "sequence",
           "enrollment", "invitation"}


def route_label(method: str, rule, values: dict) -> str:
    """'POST /settings/features/<feature>/on': the rule with its <any(...)> parts filled in."""
    return f"{method} " + ANY_PART.sub(lambda part: str(values[part.group(1)]), rule.rule)


def app_routes(app) -> list[str]:
    """Every route of the app: each method (HEAD and OPTIONS follow GET) and each value of an <any(...)> part."""
    labels = set()
    for rule in app.url_map.iter_rules():
        choices = [{}]
        for name in rule.arguments:
            converter = rule._converters[name]
            if isinstance(converter, AnyConverter):
                choices = [dict(choice, **{name: value}) for choice in choices for value in sorted(converter.items)]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            labels.update(route_label(method, rule, choice) for choice in choices)
    return sorted(labels)


class _AnyId(dict):
    """Fills every placeholder with 1: enough to tell which route a case's path reaches."""

    def __missing__(self, key: str) -> str:
        return "1"


def case_route(app, case: Case) -> str | None:
    """The route a case's request reaches, or None when it reaches none."""
    path = urlsplit(case.path.format_map(_AnyId())).path
    try:
        rule, values = app.url_map.bind("localhost").match(path, method=case.method, return_rule=True)
    except HTTPException:
        return None
    return route_label(case.method, rule, values)


def placeholders(case: Case) -> set[str]:
    """The {names} in a case's path and form data."""
    texts = [case.path, *case.data.values()]
    return {name for text in texts for _, name, _, _ in Formatter().parse(text) if name}


URL_MAP_APP = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})  # only its url_map is read
ROUTES = app_routes(URL_MAP_APP)
CASE_ROUTES = {case_route(URL_MAP_APP, case) for case in CASES}


@pytest.mark.parametrize("route", ROUTES)
def test_route_has_a_matrix_case(route):
    """A route nobody wrote a case for fails here, by name, before it ships unchecked."""
    assert route in CASE_ROUTES, (
        f"{route} has no access-matrix case. Add a Case for it to CASES in {MATRIX_FILE}: the status each role "
        f"(owner, admin, manager, user) and anonymous visitors get (helpers only(), public()); object ids come "
        f"from the `world` fixture, other setup (tokens, invitations) from a `prepare` hook.")


def test_every_case_reaches_a_route_and_states_every_role():
    """A case whose path no longer matches a route (or forgets a role) is not checking anything."""
    lost = [f"{case.method} {case.path}" for case in CASES if case_route(URL_MAP_APP, case) is None]
    assert not lost, f"cases in {MATRIX_FILE} that reach no route: {lost}"
    incomplete = [f"{case.method} {case.path}" for case in CASES if set(case.expected) != {*ROLES, "anonymous"}]
    assert not incomplete, f"cases without a status for every role and anonymous: {incomplete}"


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
        "other_owner": other_owner,
        "own": {"customer": customer.id, "member": target.id, "preset": presets[account.id],
                "link": own_links[-1].id, **_mail_objects(account, owner, customer)},
        "other": {"customer": other_customer.id, "member": other_member.id, "preset": presets[other_account.id],
                  "link": other_link.id, **_mail_objects(other_account, other_owner, other_customer)},
    }


def _mail_objects(account, owner, customer) -> dict:
    """A message with an attachment and an inline image, a shared template used by a sequence, a running
    enrolment and a pending invitation."""
    attachment = MailAttachment(filename="資料.pdf", content_type="application/pdf", size_bytes=4, content=b"%PDF")
    image = MailAttachment(filename="logo.png", content_type="image/png", size_bytes=8, content=b"\x89PNG\r\n\x1a\n",
                           content_id="logo@example.jp", inline=True)
    message = make_message(account, [customer], attachments=[attachment, image])
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
    return {"mail": message.id, "attachment": attachment.id, "image": image.id, "template": template.id,
            "sequence": sequence.id, "enrollment": enrollment.id, "invitation": invitation.id}


def _request(client, case: Case, world: dict, ids: dict, member: Membership | None):
    """Run the case's setup, then send its request with the placeholders filled."""
    if case.prepare is not None:
        ids = {**ids, **case.prepare(world, member)}
    path = case.path.format(**ids)
    if case.method == "GET":
        return client.get(path)
    return client.post(path, data={key: value.format(**ids) for key, value in case.data.items()})


def _case_id(case: Case) -> str:
    return f"{case.method} {case.path}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_own_account(client, auth, world, case, role):
    """Inside one's own account the policy decides: 200/302 when allowed, 403 otherwise."""
    member = world["members"][role]
    auth.login_member(member)
    response = _request(client, case, world, world["own"], member)
    assert response.status_code == case.expected[role]
    if response.status_code == 403:
        assert "権限がありません" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", [case for case in CASES if placeholders(case) & OBJECTS], ids=_case_id)
def test_other_account_object_is_404(client, auth, world, case, role):
    """Another account's object does not exist for anyone, whatever their role."""
    member = world["members"][role]
    auth.login_member(member)
    response = _request(client, case, world, world["other"], member)
    if case.other_expected is not None:
        assert response.status_code == case.other_expected[role]
        return
    assert response.status_code == 404
    assert "ページが見つかりません" in response.get_data(as_text=True)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_anonymous(client, world, case):
    """Without signing in every screen redirects to the login page; public pages answer as stated."""
    response = _request(client, case, world, world["own"], None)
    if case.expected["anonymous"] == LOGIN:
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")
    else:
        assert response.status_code == case.expected["anonymous"]


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
