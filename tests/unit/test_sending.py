"""The sending service with fake servers: the message is stored before it goes out, and withdrawn if refused."""
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.mails.sending import Outgoing, SendFailed, send_mail
from portal.models import FolderRole, MailMessage, MailSource, MailThread, TrackedLink
from tests.factories import enable_email, make_account, make_customer, make_link
from tests.fakes import FakeImap, FakeSmtp, environment

BODY = "資料はこちらです: https://example.jp/catalog"


def _member_with_link():
    """An account with メール on and its owner's linked mailbox."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    make_customer(account, email="yamada@client.example")
    return owner


def test_the_message_is_stored_before_the_server_takes_it(app):
    """A Sent copy the importer sees while the SMTP server is still answering is found as this same message."""
    owner = _member_with_link()
    seen_by_importer = []

    class FilingSmtp(FakeSmtp):
        def send_message(self, mime, from_addr, to_addrs):
            """Like a server that files its own copy at once, which a concurrent import pass then reads."""
            super().send_message(mime, from_addr, to_addrs)
            key = "mid:" + mime["Message-ID"].strip("<>")
            with Session(db.engine) as importer:
                found = importer.scalar(select(MailMessage).where(MailMessage.message_key == key))
                seen_by_importer.append(found is not None)
                importer.add(MailSource(message_id=found.id, link_id=_link_id(importer, owner),
                                        folder_role=FolderRole.SENT, uidvalidity=1, uid=1))
                importer.commit()

    result = send_mail(db.session, owner, Outgoing(to="yamada@client.example", subject="ご案内", body=BODY),
                       environment(FilingSmtp(), FakeImap()))
    assert seen_by_importer == [True]
    assert db.session.scalar(select(func.count()).select_from(MailMessage)) == 1
    assert [link.url for link in db.session.scalars(select(TrackedLink))] == ["https://example.jp/catalog"]
    assert result.message.sources[0].folder_role == FolderRole.SENT


def _link_id(session: Session, member) -> int:
    """The member's link id, read in the importer's own session."""
    from portal.models import MailboxLink
    return session.scalar(select(MailboxLink.id).where(MailboxLink.membership_id == member.id))


def test_a_refused_message_is_withdrawn_with_its_new_thread(app):
    """The server refuses the recipient: no message, thread or tracked link is left behind."""
    owner = _member_with_link()
    try:
        send_mail(db.session, owner, Outgoing(to="yamada@client.example", subject="ご案内", body=BODY),
                  environment(FakeSmtp(refuse=True), FakeImap()))
    except SendFailed as failure:
        assert "受け付けられませんでした" in failure.message
    else:
        raise AssertionError("the refusal was not reported")
    for model in (MailMessage, MailThread, TrackedLink):
        assert db.session.scalar(select(func.count()).select_from(model)) == 0, model



def test_a_cc_the_server_refuses_is_a_warning_while_the_rest_goes_out(app):
    """The server takes To but refuses one Cc: the mail is sent and stored, and the member is told which one."""
    owner = _member_with_link()

    class PickySmtp(FakeSmtp):
        def send_message(self, mime, from_addr, to_addrs):
            """Like smtplib: refused recipients come back as a dict while the others get the mail."""
            super().send_message(mime, from_addr, to_addrs)
            return {"gone@partner.example": (550, b"no such user")}

    smtp = PickySmtp()
    result = send_mail(db.session, owner, Outgoing(to="yamada@client.example", subject="ご案内", body=BODY,
                                                   cc=("boss@partner.example", "gone@partner.example")),
                       environment(smtp, FakeImap()))
    assert smtp.recipients == [["yamada@client.example", "boss@partner.example", "gone@partner.example"]]
    assert result.message.cc_addresses == "boss@partner.example, gone@partner.example"
    assert result.warnings == ["次の宛先はメールサーバーに受け付けられなかったため、届いていません: gone@partner.example"]
    assert db.session.scalar(select(func.count()).select_from(MailMessage)) == 1
