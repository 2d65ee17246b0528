"""Deleting imported mail in the portal (issue 12 §1): the trash icon, the confirmation screen, what goes and what
stays (a tombstone, the audit entry), the storage volume, and a whole thread."""
import pytest
from bs4 import BeautifulSoup
from sqlalchemy import func, select

from portal.extensions import db
from portal.features.services import stored_mail_volume
from portal.models import (AuditLog, Direction, MailAttachment, MailCustomer, MailDraft, MailMessage, MailSource,
                           MailTombstone, Role, TrackedLink, TrackingEvent)
from portal.tracking.tokens import CLICK_PATH, click_token
from tests.factories import enable_email, make_account, make_customer, make_link, make_member, make_message


def count(model) -> int:
    """Rows of a table."""
    return db.session.scalar(select(func.count()).select_from(model))


def seed_thread():
    """An account with a customer's two-message thread (the first with an attachment) and a lone message."""
    account, owner = make_account()
    enable_email(account, owner)
    customer = make_customer(account, name="山田 太郎", email="yamada@client.example")
    first = make_message(account, [customer], member=owner, subject="お見積りのお願い",
                         attachments=[MailAttachment(filename="見積書.pdf", content_type="application/pdf",
                                                     size_bytes=3, content=b"pdf")])
    reply = make_message(account, [customer], member=owner, subject="Re: お見積りのお願い", thread=first.thread)
    lone = make_message(account, [customer], member=owner, subject="別件のご相談")
    for message, size in ((first, 5000), (reply, 700), (lone, 300)):
        message.size_bytes = size
    link = make_link(owner)
    db.session.add(MailSource(message_id=first.id, link_id=link.id, folder_role="inbox", uidvalidity=1, uid=7))
    db.session.add(MailDraft(account_id=account.id, membership_id=owner.id, reply_to_message_id=first.id,
                             body="書きかけ"))
    db.session.commit()
    return account, owner, first, reply, lone


@pytest.mark.parametrize("role,shows", [(Role.OWNER, True), (Role.ADMIN, True), (Role.MANAGER, True),
                                        (Role.USER, False)])
def test_trash_icons_on_the_thread_page_only_for_managers_and_above(client, auth, role, shows):
    """Each message's trash icon (to its confirmation screen) and the thread's 削除, for managers and above."""
    account, owner, first, reply, _ = seed_thread()
    member = owner if role == Role.OWNER else make_member(account, role)
    auth.login_member(member)
    page = BeautifulSoup(client.get(f"/mails/{first.id}").get_data(as_text=True), "html.parser")
    trash = page.select("a:has(i.bi-trash)")
    if not shows:
        assert trash == []
        return
    hrefs = {a["href"]: a["aria-label"] for a in trash}
    assert hrefs == {f"/mails/{first.id}/delete-thread": "「このスレッドのメール 2件」を削除",
                     f"/mails/{first.id}/delete": "「お見積りのお願い」を削除",
                     f"/mails/{reply.id}/delete": "「Re: お見積りのお願い」を削除"}


def test_confirmation_names_the_message_and_says_the_server_keeps_it(client, auth):
    """GET asks (nothing is deleted yet) and says the mail server's copy stays."""
    _, owner, first, _, _ = seed_thread()
    auth.login_member(owner)
    response = client.get(f"/mails/{first.id}/delete")
    text = BeautifulSoup(response.get_data(as_text=True), "html.parser").get_text(" ", strip=True)
    assert response.status_code == 200
    assert "このメールを削除しますか？" in text and "お見積りのお願い" in text and "添付 1件" in text
    assert "メールサーバー（各ユーザーのメールソフト）のメールは削除されません" in text
    assert "はい、削除します" in text
    assert db.session.get(MailMessage, first.id) is not None


def test_manager_deletes_one_message_everything_stored_with_it_goes_and_a_tombstone_stays(client, auth, app):
    """Attachments, sightings, customer links and the draft go; the volume shrinks by its size; a tombstone by
    its key and an audit entry stay; the rest of the thread stays and is where the member lands."""
    account, owner, first, reply, lone = seed_thread()
    manager = make_member(account, Role.MANAGER)
    key, first_id = first.message_key, first.id
    assert stored_mail_volume(db.session, account.id).bytes == 6000
    auth.login_member(manager)
    response = client.post(f"/mails/{first_id}/delete")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/mails/{reply.id}")
    followed = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "メールを1件削除しました。メールサーバーのメールはそのまま残っています。" in followed
    db.session.expire_all()
    assert db.session.get(MailMessage, first_id) is None
    assert (count(MailAttachment), count(MailSource), count(MailDraft)) == (0, 0, 0)
    assert db.session.scalar(select(func.count()).select_from(MailCustomer)
                             .where(MailCustomer.message_id == first_id)) == 0
    volume = stored_mail_volume(db.session, account.id)
    assert (volume.bytes, volume.messages) == (1000, 2)
    [tombstone] = db.session.scalars(select(MailTombstone)).all()
    assert (tombstone.account_id, tombstone.message_key, tombstone.deleted_by_user_id) == (
        account.id, key, manager.user_id)
    [entry] = db.session.scalars(select(AuditLog).where(AuditLog.action == "mail.delete")).all()
    assert (entry.actor_user_id, entry.target_id, entry.details["subject"]) == (manager.user_id, first_id,
                                                                                 "お見積りのお願い")
    assert {m.id for m in db.session.scalars(select(MailMessage))} == {reply.id, lone.id}


def test_deleting_a_thread_deletes_each_of_its_messages_with_an_audit_entry_each(client, auth):
    """「はい、削除します」 on the thread's screen: both messages, two tombstones, two entries; back to the list."""
    account, owner, first, reply, lone = seed_thread()
    auth.login_member(owner)
    page = client.get(f"/mails/{reply.id}/delete-thread").get_data(as_text=True)
    assert "このスレッドのメール 2件をすべて削除しますか？" in page and "別件のご相談" not in page
    response = client.post(f"/mails/{reply.id}/delete-thread")
    assert response.status_code == 302 and response.headers["Location"].endswith("/mails")
    db.session.expire_all()
    assert [m.id for m in db.session.scalars(select(MailMessage))] == [lone.id]
    assert count(MailTombstone) == 2
    assert db.session.scalar(select(func.count()).select_from(AuditLog)
                             .where(AuditLog.action == "mail.delete")) == 2
    assert stored_mail_volume(db.session, account.id).bytes == 300


def test_plain_user_gets_403_and_nothing_is_deleted(client, auth):
    """A plain user may read the thread but not delete it (the form post is refused too)."""
    account, _, first, _, _ = seed_thread()
    auth.login_member(make_member(account, Role.USER))
    assert client.get(f"/mails/{first.id}/delete").status_code == 403
    assert client.post(f"/mails/{first.id}/delete").status_code == 403
    assert client.post(f"/mails/{first.id}/delete-thread").status_code == 403
    assert count(MailMessage) == 3 and count(MailTombstone) == 0


def test_another_accounts_message_is_404_and_stays(client, auth):
    """An owner of another account cannot reach the message (404), and it is not deleted."""
    _, _, first, _, _ = seed_thread()
    other, other_owner = make_account()
    auth.login_member(other_owner)
    assert client.post(f"/mails/{first.id}/delete").status_code == 404
    assert client.post(f"/mails/{first.id}/delete-thread").status_code == 404
    assert count(MailMessage) == 3 and count(MailTombstone) == 0


def test_the_deletion_reads_as_a_sentence_in_the_history(client, auth):
    """操作履歴 names who deleted which mail, in Japanese."""
    account, owner, first, _, _ = seed_thread()
    auth.login_member(owner)
    client.post(f"/mails/{first.id}/delete")
    text = BeautifulSoup(client.get("/settings/audit").get_data(as_text=True), "html.parser").get_text(" ")
    assert f"{owner.user.name} がメール「お見積りのお願い」を削除しました" in text


def test_deleting_a_tracked_sent_mail_warns_that_its_links_stop_working(client, auth):
    """A portal-sent, tracked message: the confirmation says the customer's links will stop working; after the
    deletion its click link answers the portal's 404 (not a 500), and its tracking rows are gone."""
    account, owner, first, _, _ = seed_thread()
    sent = make_message(account, member=owner, direction=Direction.SENT, subject="Re: お見積りのお願い",
                        thread=first.thread)
    sent.tracked, sent.sent_by_membership_id = True, owner.id
    link = TrackedLink(message=sent, position=0, url="https://example.jp/資料")
    db.session.add(link)
    db.session.commit()
    token = click_token(client.application.config["SECRET_KEY"], sent.id, link.id)
    auth.login_member(owner)
    assert client.get(CLICK_PATH + token).status_code == 302
    page = BeautifulSoup(client.get(f"/mails/{sent.id}/delete").get_data(as_text=True), "html.parser")
    assert "リンクをクリックしても、移動先のページは表示されなくなります" in page.select_one("#tracked-warning").get_text()
    assert "tracked-warning" not in client.get(f"/mails/{first.id}/delete").get_data(as_text=True)
    assert client.post(f"/mails/{sent.id}/delete").status_code == 302
    assert client.get(CLICK_PATH + token).status_code == 404
    assert (count(TrackedLink), count(TrackingEvent)) == (0, 0)


def test_a_deleted_message_is_gone_from_text_search(client, auth):
    """The text search index (FTS5 on SQLite, trigram on PostgreSQL) forgets the deleted message."""
    _, owner, first, _, lone = seed_thread()
    auth.login_member(owner)
    assert "お見積りのお願い" in client.get("/mails?q=お見積り").get_data(as_text=True)
    client.post(f"/mails/{first.id}/delete-thread")
    found = client.get("/mails?q=お見積り")
    assert found.status_code == 200 and "お見積りのお願い" not in found.get_data(as_text=True)
    assert "別件のご相談" in client.get("/mails?q=別件").get_data(as_text=True)
