"""操作履歴 in Japanese: a sentence for every audit action the portal writes, no raw keys, filters."""
import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest

from portal.extensions import db
from portal.models import AuditLog, Role, utcnow
from portal.settings import audit_text
from tests.factories import enable_email, make_account, make_customer, make_link, make_member

PORTAL = Path(__file__).resolve().parents[2] / "portal"


def written_actions() -> set[str]:
    """Every action name passed to audit.record anywhere in the portal, read from the source."""
    actions = set()
    for path in PORTAL.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "record" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "audit":
                action = node.args[3] if len(node.args) > 3 else next(k.value for k in node.keywords if k.arg == "action")
                found = [n.value for n in ast.walk(action) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                assert found, f"{path}:{node.lineno}: the action is not a literal, so no test can check its sentence"
                actions.update(found)
    return actions


def rename(membership, name: str) -> None:
    """Give a member's login a real-looking name."""
    membership.user.name = name
    db.session.commit()


def test_the_scan_finds_the_actions():
    """The source scan is not vacuous: it sees the member, mailbox and feature actions."""
    assert {"member.disable", "mailbox.unlink", "feature.on", "feature.off"} <= written_actions()


@pytest.mark.parametrize("action", sorted(written_actions()))
def test_every_written_action_reads_as_a_sentence(app, action):
    """Each action the portal writes has its own sentence naming the actor, with no key, id or JSON in it."""
    account, owner = make_account()
    rename(owner, "山田 太郎")
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    rename(member, "高橋 美咲")
    link = make_link(member, email="misaki@example.jp")
    customer = make_customer(account, name="株式会社サンプル")
    targets = {"membership": member.id, "mailbox_link": link.id, "customer": customer.id}
    details = {"email": "new@example.jp", "role": "manager", "before": "user", "after": "manager",
               "name": "見積りのご案内", "shared": True, "reason": "member_disabled", "feature": "email",
               "customer_id": customer.id, "sequence": "新規フォロー", "mailbox_unlinked": True,
               "changes": {"name": ["旧", "新"], "assigned_membership_id": [None, member.id]}}
    prefixes = {"member.": "membership", "mailbox.": "mailbox_link", "customer.": "customer"}
    target_type = next((kind for prefix, kind in prefixes.items() if action.startswith(prefix)), "other")
    entry = AuditLog(account_id=account.id, actor_user_id=owner.user_id, action=action, target_type=target_type,
                     target_id=targets.get(target_type), details=details, created_at=utcnow())
    db.session.add(entry)
    db.session.commit()
    assert action in audit_text.SENTENCES, f"add a sentence for {action} to portal/settings/audit_text.py"
    [line] = audit_text.describe(db.session, account.id, [entry])
    assert line.sentence.startswith("山田 太郎 が") or action == "invitation.decline"
    assert line.sentence.endswith(("しました", "）")), line.sentence
    assert action not in line.sentence
    assert not re.search(r"[{}\[\]\"]|None|True|False|\b[a-z]+_[a-z_]+\b", line.sentence), line.sentence
    assert line.kind != "その他"


def test_an_unknown_action_still_reads_as_words(app):
    """An action without a sentence of its own never shows its key."""
    account, owner = make_account()
    entry = AuditLog(account_id=account.id, actor_user_id=owner.user_id, action="mail.delete", target_type="mail",
                     target_id=1, details={"x": 1})
    db.session.add(entry)
    db.session.commit()
    [line] = audit_text.describe(db.session, account.id, [entry])
    assert "mail.delete" not in line.sentence and line.kind == "送受信メール"


def test_disabling_a_linked_member_reads_as_the_issue_says(client, auth):
    """「山田 太郎 が 高橋 美咲 を無効化しました（メールボックス連携を自動解除）」, and the unlink by name and cause."""
    account, owner = make_account()
    rename(owner, "山田 太郎")
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    rename(member, "高橋 美咲")
    make_link(member, email="misaki@example.jp")
    auth.login_member(owner)
    client.post(f"/settings/users/{member.id}/disable")
    page = client.get("/settings/audit").get_data(as_text=True)
    assert "山田 太郎 が 高橋 美咲 を無効化しました（メールボックス連携を自動解除）" in page
    assert "山田 太郎 が 高橋 美咲 のメールボックス連携（misaki@example.jp）を解除しました（ユーザーの無効化による自動解除）" in page
    assert "山田 太郎 がメール機能をオンにしました（課金開始）" in page
    assert "member.disable" not in page and "&#34;" not in page and "#" + str(member.id) not in page
    unlinked_nothing = make_member(account, Role.USER)
    rename(unlinked_nothing, "佐藤 健")
    client.post(f"/settings/users/{unlinked_nothing.id}/delete")
    assert "山田 太郎 が 佐藤 健 を削除しました<" in client.get("/settings/audit").get_data(as_text=True)


def test_filters_by_member_kind_and_date(client, auth):
    """ユーザー (as actor or the one acted on), 種類, 期間; another account's member filters to nothing."""
    account, owner = make_account()
    rename(owner, "山田 太郎")
    enable_email(account, owner)
    member = make_member(account, Role.USER)
    rename(member, "高橋 美咲")
    make_link(member)
    make_customer(account, name="株式会社サンプル")
    other, other_owner = make_account()
    old = AuditLog(account_id=account.id, actor_user_id=owner.user_id, action="template.create",
                   target_type="template", target_id=1, details={"name": "昔のテンプレート"},
                   created_at=utcnow() - timedelta(days=40))
    db.session.add(old)
    db.session.commit()
    auth.login_member(owner)

    by_member = client.get(f"/settings/audit?member={member.id}").get_data(as_text=True)
    assert "メールボックス（" in by_member and "株式会社サンプル" not in by_member  # the link is theirs

    mailbox_only = client.get("/settings/audit?kind=mailbox").get_data(as_text=True)
    assert "メールボックス（" in mailbox_only and "機能をオン" not in mailbox_only
    assert "株式会社サンプル" in client.get("/settings/audit?kind=customers").get_data(as_text=True)

    day = (utcnow() - timedelta(days=40)).astimezone(audit_text.JST).date().isoformat()
    dated = client.get(f"/settings/audit?date_from={day}&date_to={day}").get_data(as_text=True)
    assert "昔のテンプレート" in dated and "株式会社サンプル" not in dated
    assert "昔のテンプレート" not in client.get(
        f"/settings/audit?date_from={(utcnow().date() - timedelta(days=1)).isoformat()}").get_data(as_text=True)

    foreign = client.get(f"/settings/audit?member={other_owner.id}").get_data(as_text=True)
    assert "該当する操作履歴はありません。" in foreign

    bad = client.get("/settings/audit?date_from=2026-13-45&member=abc&kind=%00")
    assert bad.status_code == 422 and "日付は YYYY-MM-DD の形式で入力してください。" in bad.get_data(as_text=True)
    backwards = client.get("/settings/audit?date_from=2026-05-02&date_to=2026-05-01")
    assert backwards.status_code == 422 and "終了日は開始日以降" in backwards.get_data(as_text=True)
    huge = client.get(f"/settings/audit?member={2**40}&page=2")
    assert huge.status_code == 200
