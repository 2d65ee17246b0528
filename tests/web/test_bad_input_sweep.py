"""The bad-input sweep (issue 10): every route of app.url_map, every form field and query argument, as each role.

Each field and argument gets a NUL, control characters, a 2^63 integer, far dates and a 1 MB string; ids in the
address get 2^63 and the string parts a NUL. Not one answer may be a 500 (or an exception), on SQLite and
PostgreSQL. The routes come from the url_map and the fields from the forms the pages render (plus the fields of
every PortalForm class), so a new route or field is swept without touching this file.

Sampling, to stay fast: every role sends each small bad value in all fields (or arguments) at once; the owner,
who reaches every form, also sends each value in each field alone inside an otherwise valid form. The 1 MB string
goes in one field at a time (a request with it in every field would only meet the 2 MB limit).
"""
import re
from collections import defaultdict
from urllib.parse import urlencode, urlsplit

import pytest
from bs4 import BeautifulSoup
from werkzeug.routing.converters import AnyConverter, IntegerConverter

from portal.extensions import db
from portal.forms import PortalForm, submitted_text_fields
from portal.mailtemplates.services import TemplateData, create_template
from portal.models import EMAIL_FEATURE, Enrollment, MailAttachment, Role, Security, Sequence, SequenceStep, utcnow
from portal.presets.services import PresetData, create_preset
from portal.users.services import invite_member, issue_reset_link
from tests.factories import PASSWORD, enable_email, make_account, make_customer, make_link, make_member, make_message

BAD_VALUES = {
    "nul": "a\x00b",
    "control": "a\x1b[31mb\r\nBcc: x@evil.example\x7f",
    "int63": str(2**63),
    "far_future": "9999-12-31",
    "far_past": "0001-01-01",
}
MEGABYTE = "a" * 1_000_000
# Query arguments the screens read besides their GET forms' fields (pagination, filters, OAuth callbacks...).
COMMON_QUERY_ARGUMENTS = ["q", "page", "per_page", "customer", "member", "direction", "date_from", "date_to",
                          "images", "next", "sig", "state", "code", "error", "template_id", "customer_id"]
ROLES = ["owner", "admin", "manager", "user", "anonymous"]
# Routes that end the session, the account or the object are swept last, so the rest see a live world.
# (A reset or join link may take a swept value as the new password.)
DESTRUCTIVE = re.compile(r"logout|delete|disable|cancel|unlink|/off|stop|decline|^/password/reset/|^/invitations/")


def _world():
    """An account with メール on, a member per role (each with a mailbox link), and one of each object."""
    account, owner = make_account("掃引社")
    members = {"owner": owner}
    for role in ("admin", "manager", "user"):
        members[role] = make_member(account, Role(role))
    enable_email(account, owner)
    links = {role: make_link(member) for role, member in members.items()}
    customer = make_customer(account, assigned=members["user"])
    preset = create_preset(db.session, owner, PresetData("社内", "imap.example.jp", 993, Security.SSL,
                                                         "smtp.example.jp", 587, Security.STARTTLS))
    attachment = MailAttachment(filename="資料.pdf", content_type="application/pdf", size_bytes=4, content=b"%PDF")
    message = make_message(account, [customer], member=members["user"], attachments=[attachment],
                           html="<p>本文</p>")
    template = create_template(db.session, owner, TemplateData("共有", "件名", "本文", shared=True))
    sequence = Sequence(account_id=account.id, name="フォロー",
                        steps=[SequenceStep(position=0, wait_days=1, template_id=template.id)])
    db.session.add(sequence)
    db.session.flush()
    enrollment = Enrollment(account_id=account.id, sequence_id=sequence.id, customer_id=make_customer(account).id,
                            started_at=utcnow(), next_due_at=utcnow())
    db.session.add(enrollment)
    db.session.commit()
    invitation, _ = invite_member(db.session, owner, "invited@example.jp", "招待", Role.USER, utcnow(), 7)
    # Live tokens, so the join and reset forms behind them are swept too (not only their 404).
    _, join_token = invite_member(db.session, owner, "joining@example.jp", "参加予定", Role.USER, utcnow(), 7)
    reset_token, _ = issue_reset_link(db.session, owner, members["manager"], utcnow(), 1)
    ids = {"customer_id": customer.id, "message_id": message.id, "attachment_id": attachment.id,
           "template_id": template.id, "sequence_id": sequence.id, "enrollment_id": enrollment.id,
           "membership_id": members["user"].id, "invitation_id": invitation.id, "preset_id": preset.id,
           "link_id": links["user"].id,
           "feature": EMAIL_FEATURE, "auth.invitation": {"token": join_token},
           "auth.reset_password": {"token": reset_token}}
    return {role: member.user.email for role, member in members.items()}, ids


def _urls(app, ids: dict) -> list[tuple[str, str, str]]:
    """(method, url, rule) for every GET and POST route, once per <any(...)> value, with the world's ids."""
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        choices, own = [{}], ids.get(rule.endpoint, {})
        for name in rule.arguments:
            converter = rule._converters[name]
            if isinstance(converter, AnyConverter):
                values = sorted(converter.items)
            elif isinstance(converter, IntegerConverter):
                values = [ids.get(name, 1)]
            else:
                values = [own.get(name, ids.get(name, "x"))]
            choices = [dict(choice, **{name: value}) for choice in choices for value in values]
        for choice in choices:
            url = rule.build(choice, append_unknown=False)[1]
            urls.extend((method, url, rule.rule) for method in ("GET", "POST") if method in rule.methods)
    return sorted(urls, key=lambda item: (bool(DESTRUCTIVE.search(item[1])), "/settings/account/" in item[1]))


def _bad_paths(app) -> list[str]:
    """Each route with every id at 2^63 and every string part holding a NUL (the converters must say 404)."""
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or all(isinstance(rule._converters[n], AnyConverter) for n in rule.arguments):
            continue  # nothing to spoil in the address (and POSTing a fixed one may cancel the account)
        values = {}
        for name in rule.arguments:
            converter = rule._converters[name]
            values[name] = (sorted(converter.items)[0] if isinstance(converter, AnyConverter)
                            else 2**63 if isinstance(converter, IntegerConverter) else "a\x00b")
        if any(isinstance(rule._converters[n], IntegerConverter) for n in rule.arguments):
            # The converter refuses to build past its max: write the address by hand.
            path = rule.rule
            for name, value in values.items():
                path = re.sub(rf"<[^>]*\b{name}>", str(value), path)
            paths.append(path)
        else:
            paths.append(rule.build(values, append_unknown=False)[1])
    return paths


def _form_class_fields() -> set[str]:
    """The field names of every PortalForm class (rows of field lists included)."""
    names = set()
    classes = list(PortalForm.__subclasses__())
    while classes:
        form_class = classes.pop()
        classes.extend(form_class.__subclasses__())
        try:
            form = form_class(formdata=None, meta={"csrf": False})
        except Exception:  # noqa: BLE001 - a form that needs arguments: its rendered fields are read instead
            continue
        names.update(field.name for field in submitted_text_fields(form))
    return names


def _rendered_forms(html: str, page_path: str) -> dict[tuple[str, str], dict[str, str]]:
    """{(method, action path): {field: default value}} of the forms on a page."""
    forms = {}
    for form in BeautifulSoup(html, "html.parser").find_all("form"):
        method = (form.get("method") or "get").upper()
        action = urlsplit(form.get("action") or page_path).path
        fields = forms.setdefault((method, action), {})
        for element in form.find_all(["input", "select", "textarea"]):
            name = element.get("name")
            if not name or element.get("type") in ("submit", "button", "image", "file"):
                continue
            if element.name == "select":
                option = element.find("option", selected=True) or element.find("option")
                fields.setdefault(name, option.get("value", option.text) if option else "")
            elif element.name == "textarea":
                fields.setdefault(name, element.text)
            elif element.get("type") in ("checkbox", "radio"):
                if element.has_attr("checked"):
                    fields.setdefault(name, element.get("value", "y"))
            else:
                fields.setdefault(name, element.get("value", ""))
    return forms


class Sweep:
    """Sends the requests as one role and notes every 500 or exception."""

    def __init__(self, app, role: str, email: str | None):
        self.client, self.role, self.email = app.test_client(), role, email
        self.failures: list[str] = []
        self.requests = 0

    def sign_in(self, must_work: bool) -> None:
        """A fresh session as the role (a route swept before may have ended it).

        Until the destructive routes run, signing in must work: else the rest would be swept as a visitor.
        """
        if self.email is None:
            return
        response = self.client.post("/login", data={"email": self.email, "password": PASSWORD})
        if must_work and response.status_code != 302:
            self.failures.append(f"{self.role} could not sign in again ({response.status_code})")

    def send(self, method: str, url: str, data: dict | None = None, what: str = ""):
        """One request; a 500 or an exception is a failure."""
        self.requests += 1
        try:
            response = (self.client.get(url) if method == "GET"
                        else self.client.post(url, data=data or {}))
        except Exception as error:  # noqa: BLE001 - the app raised: exactly what the sweep looks for
            self.failures.append(f"{self.role} {method} {url[:120]} {what}: {type(error).__name__}: {error}"[:400])
            return None
        if response.status_code == 500:  # 502/503 are deliberate answers (a mail server that cannot be reached)
            self.failures.append(f"{self.role} {method} {url[:120]} {what}: {response.status_code}")
        return response


@pytest.mark.parametrize("role", ROLES)
def test_no_bad_input_gives_a_500(make_app, role):
    """Every route, field and argument with every bad value: a clear answer (4xx or a page), never a 500."""
    app = make_app(MAIL_CHECK_TIMEOUT_SECONDS=1, MAIL_TIMEOUT_SECONDS=1)
    with app.app_context():
        emails, ids = _world()
    sweep = Sweep(app, role, emails.get(role))
    class_fields = _form_class_fields()
    urls = _urls(app, ids)

    # The pages as this role sees them, and the forms they render (fields and their valid defaults).
    sweep.sign_in(must_work=True)
    forms: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for method, url, _ in urls:
        if method == "GET":
            response = sweep.send("GET", url, what="(plain)")
            if response is not None and response.mimetype == "text/html":
                for key, fields in _rendered_forms(response.get_data(as_text=True), urlsplit(url).path).items():
                    forms[key].update(fields)

    for path in _bad_paths(app):
        sweep.send("GET", path, what="(bad path)")
        sweep.send("POST", path, what="(bad path)")

    for method, url, _ in urls:
        sweep.sign_in(must_work=not DESTRUCTIVE.search(url))
        path = urlsplit(url).path
        each_alone = role == "owner" and not DESTRUCTIVE.search(url)
        if method == "GET":
            rendered = sorted(forms.get(("GET", path), {}))
            arguments = sorted(set(COMMON_QUERY_ARGUMENTS) | set(rendered))
            for label, value in BAD_VALUES.items():
                sweep.send("GET", f"{url}?{urlencode(dict.fromkeys(arguments, value))}", what=label)
            for name in (rendered or ["q"]) if each_alone else ["q"]:
                sweep.send("GET", f"{url}?{urlencode({name: MEGABYTE})}", what=f"1 MB in {name}")
            continue
        defaults = {k: v for k, v in forms.get(("POST", path), {}).items() if k != "csrf_token"}
        fields = sorted(set(defaults) or class_fields)
        for label, value in BAD_VALUES.items():
            sweep.send("POST", url, dict.fromkeys(fields, value), what=f"{label} in every field")
            if each_alone:
                for name in fields:
                    sweep.send("POST", url, {**defaults, name: value}, what=f"{label} in {name}")
        for name in fields if each_alone else fields[:1]:
            sweep.send("POST", url, {**defaults, name: MEGABYTE}, what=f"1 MB in {name}")

    assert sweep.requests > 200
    assert not sweep.failures, f"{len(sweep.failures)} of {sweep.requests} requests failed:\n" + "\n".join(
        sweep.failures[:60])
