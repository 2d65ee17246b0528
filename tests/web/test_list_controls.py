"""Shared list controls: pen and trash buttons that say which object they act on, empty rows that span the table."""
import re

import pytest
from bs4 import BeautifulSoup

from portal.automations import services as automations
from portal.extensions import db
from portal.models import MailboxPreset, MailTemplate, Role, Security
from tests.factories import enable_email, make_account, make_customer, make_member

ICON_VERBS = {"bi-pencil": "編集", "bi-trash": "削除"}


@pytest.fixture
def world(app):
    """An account with メール on, a plain member, and one object of each kind that has a pen and a trash."""
    account, owner = make_account()
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    customer = make_customer(account, name="山田 太郎", email="yamada@client.example")
    template = MailTemplate(account_id=account.id, name="初回のお礼", subject="{{顧客名}}様", body="本文")
    preset = MailboxPreset(account_id=account.id, name="社内サーバー", imap_host="imap.example.co.jp", imap_port=993,
                           imap_security=Security.SSL, smtp_host="smtp.example.co.jp", smtp_port=587,
                           smtp_security=Security.STARTTLS)
    db.session.add_all([template, preset])
    db.session.commit()
    sequence = automations.create_sequence(db.session, owner, automations.SequenceData(
        "資料請求フォロー", True, [automations.StepData(0, template.id)]))
    return {"owner": owner, "member": member, "customer": customer, "template": template, "sequence": sequence}


def icon_buttons(html: str):
    """(verb of the icon, aria-label, text of the row or page header around it) for every pen and trash."""
    page = BeautifulSoup(html, "html.parser")
    found = []
    for icon in page.select("main i.bi-pencil, main i.bi-trash"):
        button = icon.find_parent("a")
        around = button.find_parent("tr") or button.find_parent(class_="page-header")
        verb = ICON_VERBS[next(name for name in icon["class"] if name in ICON_VERBS)]
        found.append((verb, button.get("aria-label"), around.get_text(" ", strip=True)))
    return found


@pytest.mark.parametrize("path,names", [
    ("/customers", {"山田 太郎"}),
    ("/customers/{customer}", {"山田 太郎"}),
    ("/templates", {"初回のお礼"}),
    ("/templates/{template}", {"初回のお礼"}),
    ("/automations", {"資料請求フォロー"}),
    ("/automations/{sequence}", {"資料請求フォロー"}),
    ("/settings/mailbox-servers", {"社内サーバー"}),
    ("/settings/users", {"userさん"}),
])
def test_pen_and_trash_name_their_object(client, auth, world, path, names):
    """A screen reader hears 「名前」を編集 / 「名前」を削除, and the name is the one of the row it sits in."""
    auth.login_member(world["owner"])
    url = path.format(customer=world["customer"].id, template=world["template"].id, sequence=world["sequence"].id)
    buttons = icon_buttons(client.get(url).get_data(as_text=True))
    assert buttons
    labelled = set()
    for verb, label, around in buttons:
        match = re.fullmatch(r"「(.+)」を(編集|削除)", label or "")
        assert match and match.group(2) == verb, label
        assert match.group(1) in around
        labelled.add(match.group(1))
    assert all(any(name in label for label in labelled) for name in names), labelled


EMPTY_LISTS = ["/customers", "/customers?q=見つからない", "/templates", "/automations", "/settings/mailbox-servers", "/mails"]


# /settings/mailbox/links is never empty: it lists every active member, the viewer included.
@pytest.mark.parametrize("role,path", [("owner", path) for path in EMPTY_LISTS]
                         + [("member", path) for path in EMPTY_LISTS])
def test_empty_row_spans_every_column(client, auth, role, path):
    """On an empty list the one message row is exactly as wide as the header, whichever columns the role sees."""
    account, owner = make_account()
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    auth.login_member(owner if role == "owner" else member)
    page = BeautifulSoup(client.get(path).get_data(as_text=True), "html.parser")
    [cell] = page.select("main tbody td[colspan]")
    assert int(cell["colspan"]) == len(cell.find_parent("table").select("thead th"))
    assert cell.get_text(strip=True)
