"""Names with line breaks (issue 10, hole 6): refused by the forms, and a stored one never breaks sending."""
from email.header import decode_header, make_header

import pytest

from portal.extensions import db
from portal.mails.sending import Outgoing, one_line, send_mail
from tests.factories import enable_email, make_account, make_customer, make_link
from tests.fakes import FakeImap, FakeSmtp, environment


@pytest.mark.parametrize("stored, shown", [("山田\r\n太郎", "山田 太郎"), ("Bcc: spy@evil.example\n営業部", "Bcc: spy@evil.example 営業部"),
                                           ("\x00佐藤\t花子 ", "佐藤 花子"), ("", "")])
def test_one_line_turns_controls_into_single_spaces(stored, shown):
    """Every control character (CR, LF, tab, NUL) becomes a space; runs collapse and ends are trimmed."""
    assert one_line(stored) == shown


def test_a_member_whose_stored_name_has_a_line_break_can_still_send(app):
    """A name saved before the forms refused line breaks: the reply goes out with a one-line From (was a 500)."""
    account, owner = make_account()
    enable_email(account, owner)
    make_link(owner)
    make_customer(account, email="yamada@client.example")
    owner.user.name = "営業部\r\nBcc: spy@evil.example"
    db.session.commit()
    smtp = FakeSmtp()
    send_mail(db.session, owner, Outgoing(to="yamada@client.example", subject="ご案内", body="本文です。"),
              environment(smtp, FakeImap()))
    sent = smtp.sent[0]
    assert str(make_header(decode_header(sent["From"]))) == f"営業部 Bcc: spy@evil.example <{owner.user.email}>"
    assert sent["Bcc"] is None
