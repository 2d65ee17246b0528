"""The envelope FETCH read without imapclient's general parser gives exactly what that parser gives (real Dovecot)."""
from imapclient.response_parser import parse_fetch_response

from portal.mailsync.client import HEADER_KEY, _envelopes_of_usual_shape, _untagged_fetch
from tests.integration.mailbox import mail


def test_the_usual_answer_is_read_fast_and_matches_the_general_parser(dovecot, mail_user):
    """Japanese, folded, empty and quoted header blocks: same UIDs, sizes, arrival times and header bytes."""
    messages = [
        mail('"山田 太郎" <yamada@client.example>', mail_user.email, subject="お見積りのお願い（至急）"),
        mail("a@example.jp", mail_user.email, subject="x" * 200, cc='"Doe, \\"J\\"" <doe@example.jp>'),
        b"X-Nothing: here\r\n\r\nno rule headers at all",
        (f"From: b@example.jp\r\nTo: {mail_user.email}, c@example.jp,\r\n\td@example.jp\r\n"
         "Subject: =?ISO-2022-JP?B?GyRCTzokNyRiJDckXhsoQg==?=\r\n\r\nfolded To").encode(),
    ]
    with dovecot.connect(mail_user.email, mail_user.password) as client:
        for raw in messages:
            client.append("INBOX", raw)
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["ALL"])
        lines = _untagged_fetch(client, uids)
    fast = _envelopes_of_usual_shape(lines)
    assert fast is not None, "Dovecot's usual answer must take the fast path"
    general = parse_fetch_response(lines, False, True)
    assert [e.uid for e in fast] == sorted(general) == sorted(uids)
    for envelope in fast:
        data = general[envelope.uid]
        assert envelope.size == data[b"RFC822.SIZE"] and envelope.internal_date == data[b"INTERNALDATE"]
        assert envelope.headers == data[HEADER_KEY]
    assert "お見積り".encode("iso-2022-jp") not in fast[0].headers  # raw header bytes, not decoded text
    assert fast[2].headers.strip() == b""
