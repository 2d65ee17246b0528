"""The import engine against a real Dovecot: each rule, exactly-once storage, read-only access, errors."""
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.mailbox.credentials import StoredPasswords
from portal.mailsync.connection import ConnectionPolicy
from portal.mails import search
from portal.mailsync import engine
from portal.mailsync.engine import EngineConfig
from portal.mailsync.parse import parse_message
from portal.mailsync.runner import connector
from portal.models import Direction, ImportLogEntry, LinkState, MailCustomer, MailMessage, MailSource, Role, utcnow
from portal.secretbox import SecretBox
from tests.factories import TEST_KEY, enable_email, make_account, make_customer, make_member
from tests.integration.mailbox import CUSTOMER, Mailbox, mail


def stored(account_id=None) -> list[MailMessage]:
    """Stored messages, oldest first."""
    db.session.expire_all()
    query = select(MailMessage).order_by(MailMessage.id)
    if account_id is not None:
        query = query.where(MailMessage.account_id == account_id)
    return list(db.session.scalars(query))


def reasons() -> list[str]:
    """Import log reasons, oldest first."""
    return list(db.session.scalars(select(ImportLogEntry.reason).order_by(ImportLogEntry.id)))


def test_customer_in_from_or_to_comes_in_others_do_not(mailbox):
    """Rule 2: From or To; a stranger's mail stays out and the log says why."""
    mailbox.deliver(mail('"山田" <Yamada@Client.Example>', mailbox.user.email, subject="見積のお願い"))
    mailbox.deliver(mail("stranger@else.example", mailbox.user.email, subject="広告"))
    result = mailbox.sync()
    [message] = stored()
    assert (result.imported, message.subject, message.direction) == (1, "見積のお願い", Direction.RECEIVED)
    assert message.from_address == CUSTOMER
    assert reasons() == ["no_customer"]


def test_sent_folder_mail_to_customer_is_sent_direction(mailbox):
    """Mail the member sent to a customer comes in from Sent as 送信."""
    mailbox.deliver(mail(mailbox.user.email, CUSTOMER, subject="お見積書送付"), folder="Sent")
    mailbox.sync()
    assert [(m.subject, m.direction) for m in stored()] == [("お見積書送付", Direction.SENT)]


def test_cc_and_bcc_never_count(mailbox):
    """Rule 2: a customer only in Cc stays out."""
    mailbox.deliver(mail("colleague@else.example", mailbox.user.email, cc=CUSTOMER))
    mailbox.sync()
    assert stored() == [] and reasons() == ["cc_only"]


def test_mail_before_the_link_is_never_imported(account, dovecot, pki, mail_user, smtp_ssl):
    """Rule 1: what was in the mailbox at link time stays out; what arrives after comes in."""
    dovecot.append(mail_user.email, mail_user.password, "INBOX", mail(CUSTOMER, mail_user.email, subject="古い"))
    box = Mailbox(dovecot, pki, mail_user, account[1], smtp_ssl)
    box.deliver(mail(CUSTOMER, mail_user.email, subject="新しい"))
    box.sync()
    assert [m.subject for m in stored()] == ["新しい"]


def test_member_address_in_to_is_not_a_customer(account, mailbox):
    """Rule 3: a customer record carrying a member's address does not pull the member's mail in."""
    colleague = make_member(account[0], Role.USER, email="colleague@ourco.example")
    make_customer(account[0], name="社員を顧客登録", email=colleague.user.email)
    mailbox.deliver(mail("someone@else.example", colleague.user.email))
    mailbox.sync()
    assert stored() == [] and reasons() == ["member_address"]


def test_only_mail_after_the_customer_was_created(account, mailbox):
    """Rule 4: server arrival time against the customer's creation."""
    past = datetime.now(timezone.utc) - timedelta(hours=2)
    mailbox.deliver(mail("new@client.example", mailbox.user.email, subject="登録前"), when=past)
    make_customer(account[0], name="新規顧客", email="new@client.example")
    mailbox.deliver(mail("new@client.example", mailbox.user.email, subject="登録後"))
    mailbox.sync()
    assert [m.subject for m in stored()] == ["登録後"] and reasons() == ["before_customer"]


def test_encoded_display_name_and_case_still_match(mailbox):
    """Rule 5: =?ISO-2022-JP?B?...?= display names and upper case addresses match."""
    mailbox.deliver(mail("=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <YAMADA@CLIENT.EXAMPLE>", mailbox.user.email))
    mailbox.sync()
    assert len(stored()) == 1


def test_rerun_imports_nothing_new_and_flags_stay(mailbox):
    """A second pass stores nothing again; nothing on the server is marked read."""
    uid = mailbox.deliver(mail(CUSTOMER, mailbox.user.email))
    first, second = mailbox.sync(), mailbox.sync()
    assert (first.imported, second.imported, len(stored())) == (1, 0, 1)
    with mailbox.dovecot.connect(mailbox.user.email, mailbox.user.password) as imap:
        imap.select_folder("INBOX", readonly=True)
        flags = imap.get_flags([uid])[uid]
    assert b"\\Seen" not in flags and b"\\Deleted" not in flags


def test_group_address_linked_twice_is_stored_once_with_two_sources(account, dovecot, pki, mail_user, smtp_ssl):
    """Two members linking info@: one message, two sources."""
    first = Mailbox(dovecot, pki, mail_user, account[1], smtp_ssl)
    second = Mailbox(dovecot, pki, mail_user, make_member(account[0], Role.MANAGER), smtp_ssl)
    first.deliver(mail(CUSTOMER, mail_user.email))
    first.sync(), second.sync()
    [message] = stored()
    assert db.session.scalar(select(func.count(MailSource.id)).where(MailSource.message_id == message.id)) == 2


def test_message_stored_by_another_link_meanwhile_gets_this_sighting_on_the_retry(account, mailbox, monkeypatch):
    """Another link of the account stores the same message between this batch's key lookup and its insert: the
    unique key fails the batch, and its retry adds this link's sighting and customer to the stored message."""
    raw = mail(CUSTOMER, mailbox.user.email, subject="同時に届いたメール")
    mailbox.deliver(raw)
    write = engine._BatchWriter.write

    def store_elsewhere_first(writer):
        monkeypatch.setattr(engine._BatchWriter, "write", write)  # only the first attempt races
        with Session(db.engine) as other:
            other.add(MailMessage(account_id=account[0].id, message_key="mid:" + parse_message(raw).message_id,
                                  direction=Direction.RECEIVED, from_address=CUSTOMER, subject="同時に届いたメール",
                                  received_at=utcnow()))
            other.commit()
        return write(writer)

    monkeypatch.setattr(engine._BatchWriter, "write", store_elsewhere_first)
    result = mailbox.sync()
    [message] = stored()
    assert (result.state, result.imported) == (LinkState.ACTIVE, 0)
    assert [s.link_id for s in db.session.scalars(select(MailSource))] == [mailbox.link.id]
    assert db.session.scalar(select(MailCustomer.message_id)) == message.id


def test_same_mailbox_in_two_accounts_gives_each_its_own_copy(account, dovecot, pki, mail_user, smtp_ssl):
    """Each account keeps its own copy, matched to its own customer."""
    other, other_owner = make_account()
    enable_email(other, other_owner)
    make_customer(other, email=CUSTOMER)
    mine = Mailbox(dovecot, pki, mail_user, account[1], smtp_ssl)
    theirs = Mailbox(dovecot, pki, mail_user, other_owner, smtp_ssl)
    mine.deliver(mail(CUSTOMER, mail_user.email))
    mine.sync(), theirs.sync()
    assert len(stored(account[0].id)) == 1 and len(stored(other.id)) == 1


def test_expunged_on_the_server_stays_in_the_portal(mailbox):
    """Deleting on the server never deletes an imported message."""
    uid = mailbox.deliver(mail(CUSTOMER, mailbox.user.email))
    mailbox.sync()
    with mailbox.dovecot.connect(mailbox.user.email, mailbox.user.password) as imap:
        imap.select_folder("INBOX")
        imap.delete_messages([uid])
        imap.expunge()
    mailbox.sync()
    assert len(stored()) == 1


def test_uidvalidity_change_duplicates_nothing(mailbox):
    """A recreated folder (new UIDVALIDITY) with the same mail plus one new message: only the new one is added."""
    known = mail(CUSTOMER, mailbox.user.email, subject="既知")
    mailbox.deliver(known, folder="Sent")
    mailbox.sync()
    mailbox.dovecot.delete_folder(mailbox.user.email, mailbox.user.password, "Sent")
    mailbox.dovecot.create_folder(mailbox.user.email, mailbox.user.password, "Sent")
    mailbox.deliver(known, folder="Sent")
    mailbox.deliver(mail(mailbox.user.email, CUSTOMER, subject="新規"), folder="Sent")
    mailbox.sync()
    assert sorted(m.subject for m in stored()) == ["新規", "既知"]


class DropAfter:
    """Wraps a client and drops the connection on the n-th body fetch, as a dying network would."""

    def __init__(self, client, fail_on: int):
        self.client, self.fail_on, self.calls = client, fail_on, 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    def fetch_raw(self, uids):
        """Fail on the chosen call."""
        self.calls += 1
        if self.calls == self.fail_on:
            raise ConnectionResetError("connection dropped")
        return self.client.fetch_raw(uids)


def test_pass_broken_mid_way_then_rerun_stores_each_message_once(mailbox):
    """Batch 1 commits, batch 2 dies; the rerun completes and nothing is stored twice."""
    for number in range(5):
        mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject=f"件名{number}"))
    config = EngineConfig(batch_size=2)
    real = connector(StoredPasswords(SecretBox(TEST_KEY)), mailbox.policy)
    broken = mailbox.sync(config, connect=lambda link: DropAfter(real(link), fail_on=2))
    assert broken.state == LinkState.ERROR and len(stored()) == 2
    mailbox.link.next_attempt_at = None
    db.session.commit()
    mailbox.sync(config)
    assert sorted(m.subject for m in stored()) == [f"件名{n}" for n in range(5)]


def test_wrong_password_needs_reauthentication_and_stops_retrying(mailbox):
    """A rejected login: 要再認証, and later passes do not try again."""
    mailbox.dovecot.add_user(mailbox.user.email, "changed-on-the-server")
    result = mailbox.sync()
    assert result.state == LinkState.REAUTH and "ログインできません" in result.error
    assert mailbox.sync().skipped


def test_server_unreachable_then_back_imports_what_arrived(mailbox):
    """エラー with a backoff while unreachable; once back, the next pass brings the mail in."""
    real_port = mailbox.link.imap_port
    mailbox.link.imap_port = 1  # nothing listens there
    db.session.commit()
    policy = ConnectionPolicy(ca_file=mailbox.policy.ca_file, extra_ports=(1,) + mailbox.policy.extra_ports,
                              allowed_networks=mailbox.policy.allowed_networks)
    result = mailbox.sync(connect=connector(StoredPasswords(SecretBox(TEST_KEY)), policy))
    db.session.refresh(mailbox.link)
    assert result.state == LinkState.ERROR and mailbox.link.next_attempt_at > utcnow()
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="停止中に届いた"))
    mailbox.link.imap_port = real_port
    db.session.commit()
    assert mailbox.sync().imported == 1
    assert [m.subject for m in stored()] == ["停止中に届いた"]
    db.session.refresh(mailbox.link)
    assert mailbox.link.state == LinkState.ACTIVE and mailbox.link.failure_count == 0


def test_customers_are_linked_and_volume_grows(account, mailbox):
    """The matched customer is recorded, and the account's stored volume counts the message."""
    from portal.features.services import stored_mail_volume
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email))
    mailbox.sync()
    [message] = stored()
    assert db.session.scalar(select(MailCustomer.customer_id).where(MailCustomer.message_id == message.id))
    volume = stored_mail_volume(db.session, account[0].id)
    assert volume.messages == 1 and volume.bytes == message.size_bytes > 0


def test_absurd_headers_do_not_block_the_batch(mailbox):
    """A 2,000-character sender address and Message-ID are stored (cut to fit) and the next message still comes in."""
    long_local = "x" * 2000
    raw = mail(f"{long_local}@client.example", CUSTOMER, message_id=f"<{'m' * 1500}@test.example>")
    mailbox.deliver(raw, folder="Sent")
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="後続のメール"))
    result = mailbox.sync()
    assert result.state == LinkState.ACTIVE
    assert "後続のメール" in [m.subject for m in stored()] and len(stored()) == 2


def test_threads_follow_references_then_subject_and_customer(mailbox):
    """A reply with In-Reply-To joins its thread; a bare 「Re:」 from the same customer joins by subject."""
    first_id = make_msgid(domain="client.example")
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="納期のご相談", message_id=first_id))
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = mailbox.user.email, CUSTOMER, "件名を変えた返信"
    reply["Message-ID"], reply["In-Reply-To"], reply["References"] = make_msgid(), first_id, first_id
    reply.set_content("承知しました。")
    mailbox.deliver(reply.as_bytes().replace(b"\n", b"\r\n"), folder="Sent")
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="Re: 返信: 納期のご相談"))
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="別件のお問い合わせ"))
    mailbox.sync()
    threads = {m.subject: m.thread_id for m in stored()}
    assert threads["納期のご相談"] == threads["件名を変えた返信"] == threads["Re: 返信: 納期のご相談"]
    assert threads["別件のお問い合わせ"] != threads["納期のご相談"]


def test_imported_mail_is_found_by_the_text_search(mailbox):
    """The batch's rows go in as multi-row INSERTs: the search index (FTS5 triggers, pg_trgm) follows them too."""
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="特急の見積依頼", body="納品予定日は来週の水曜日です。"))
    mailbox.sync()
    [message] = stored()
    assert search.index_matches(db.session, ("納品予定日",), 10) == [message.id]
    assert search.index_matches(db.session, ("特急の見積",), 10) == [message.id]


def test_a_later_pass_joins_stored_threads_and_moves_their_time(mailbox):
    """In-Reply-To and the subject find threads an earlier pass stored; the thread's time moves to its newest mail."""
    first_id = make_msgid(domain="client.example")
    hour = datetime.now(timezone.utc).replace(microsecond=0)
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="納期のご相談", message_id=first_id),
                    when=hour + timedelta(hours=1))
    mailbox.sync()
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = CUSTOMER, mailbox.user.email, "件名を変えた返信"
    reply["Message-ID"], reply["In-Reply-To"] = make_msgid(), first_id
    reply.set_content("承知しました。")
    mailbox.deliver(reply.as_bytes().replace(b"\n", b"\r\n"), when=hour + timedelta(hours=3))
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="Re: 納期のご相談"), when=hour + timedelta(hours=2))
    mailbox.sync()
    messages = stored()
    assert len(messages) == 3 and len({m.thread_id for m in messages}) == 1
    assert messages[0].thread.last_message_at == max(m.received_at for m in messages) != messages[0].received_at


def test_too_large_mail_is_kept_as_headers_and_flagged(mailbox):
    """Over the size cap: stored with headers only, marked too large, listed in the import log."""
    big = mail(CUSTOMER, mailbox.user.email, subject="大きな添付", body="x" * 5000)
    mailbox.deliver(big)
    mailbox.sync(EngineConfig(size_cap=2000))
    [message] = stored()
    assert message.too_large and message.subject == "大きな添付" and b"x" * 100 not in message.raw
    assert reasons() == ["too_large"]


def test_broken_message_is_stored_raw_with_a_defect_and_the_batch_goes_on(mailbox):
    """Undecodable text is kept with its raw bytes and a defect flag; the next message still comes in."""
    broken = (f"From: {CUSTOMER}\r\nTo: {mailbox.user.email}\r\nSubject: =?x-unknown?B?gqCCoA==?=\r\n"
              "Content-Type: text/plain; charset=x-unknown\r\n\r\n").encode() + b"\x82\xa0\xff\xfe\x00\r\n"
    mailbox.deliver(broken)
    mailbox.deliver(mail(CUSTOMER, mailbox.user.email, subject="正常なメール"))
    mailbox.sync()
    first, second = stored()
    assert first.has_defects and first.raw.startswith(b"From: ") and "\x00" not in (first.text_body or "")
    assert second.subject == "正常なメール"
