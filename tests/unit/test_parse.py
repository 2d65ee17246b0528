"""Raw message bytes become a ParsedMessage: Japanese headers and bodies decoded, odd mail never raising."""
import base64
import random
import time
from datetime import datetime, timedelta, timezone

import pytest

from portal.mailsync.headers import Address, decode_header_value, normalise_subject, parse_addresses, parse_emails
from portal.mailsync.parse import ParsedMessage, parse_message
from tests.mailtext import assert_clean, jis

CRLF = b"\r\n"


def mail(*headers: str, body: bytes | str = b"") -> bytes:
    """A message from header lines and a body, with CRLF line ends as IMAP delivers them."""
    body = body.encode() if isinstance(body, str) else body
    return CRLF.join(h.encode("utf-8", "surrogateescape") for h in headers) + CRLF + CRLF + body


def b_word(text: str, charset: str, data: bytes | None = None) -> str:
    """One RFC 2047 B-encoded word."""
    data = text.encode(charset) if data is None else data
    return f"=?{charset}?B?{base64.b64encode(data).decode()}?="


# --- headers -------------------------------------------------------------------------------------------------

def test_iso2022jp_subject_with_nec_characters():
    """①㈱Ⅱ inside =?ISO-2022-JP?B?...?= decode (policy.default leaves such a subject undecoded)."""
    parsed = parse_message(mail("Subject: " + b_word("", "ISO-2022-JP", jis("①㈱Ⅱ 見積書のご送付")), body="x"))
    assert parsed.subject == "①㈱Ⅱ 見積書のご送付"
    assert parsed.defects == []


def test_shift_jis_b_and_utf8_q_subjects():
    """Shift_JIS (read as CP932) and UTF-8 Q-encoding, underscores meaning spaces."""
    assert decode_header_value(b_word("№ 請求書", "Shift_JIS", "№ 請求書".encode("cp932"))) == "№ 請求書"
    assert decode_header_value("=?utf-8?q?=E3=81=8A=E7=9F=A5=E3=82=89=E3=81=9B_2024?=") == "お知らせ 2024"
    assert decode_header_value("=?UTF-8?Q?caf=C3=A9?= au lait") == "café au lait"


def test_adjacent_encoded_words_are_joined_and_split_characters_survive():
    """Whitespace between encoded words goes, between a word and text stays; bytes split across words rejoin."""
    data = jis("日本語の件名")
    split_jis = b_word("", "ISO-2022-JP", data[:7]) + "\r\n " + b_word("", "ISO-2022-JP", data[7:])
    assert decode_header_value(split_jis) == "日本語の件名"
    utf8 = "確認".encode()
    assert decode_header_value(b_word("", "UTF-8", utf8[:2]) + " " + b_word("", "UTF-8", utf8[2:])) == "確認"
    assert decode_header_value("Re: " + b_word("件名", "UTF-8") + " (2)") == "Re: 件名 (2)"


def test_unknown_and_broken_encoded_words_are_tolerated():
    """x-unknown charsets are guessed, bad base64 padding repaired, a malformed word kept as text."""
    assert decode_header_value(b_word("テスト", "x-unknown", "テスト".encode())) == "テスト"
    assert decode_header_value("=?utf-8?B?44OG44K544OI?=") == "テスト"
    assert decode_header_value("=?utf-8?B?44OG44K544OI?") == "=?utf-8?B?44OG44K544OI?"
    assert decode_header_value("") == ""


def test_raw_eight_bit_headers_use_the_message_charset():
    """Unencoded Shift_JIS or Latin-1 bytes in a header are read with the body's charset or a guess, flagged."""
    raw = (b"Subject: " + "見積書".encode("cp932") + CRLF + b"From: a@example.jp" + CRLF
           + b"Content-Type: text/plain; charset=Shift_JIS" + CRLF + CRLF + "本文".encode("cp932"))
    parsed = parse_message(raw)
    assert (parsed.subject, parsed.text) == ("見積書", "本文")
    latin = parse_message(b"Subject: Die Fr\xf6sche" + CRLF + CRLF + b"x")
    assert latin.subject == "Die Frösche" and "header_decode" in latin.defects


def test_display_names_decoded_and_addresses_lower_cased():
    """Encoded words in quoted or bare display names decode; addresses come back lower-case."""
    name = b_word("", "ISO-2022-JP", jis("山田 太郎㈱"))
    parsed = parse_message(mail(f'From: "{name}" <Taro.Yamada@Example.JP>',
                                f"To: {b_word('佐藤', 'UTF-8')} <SATO@example.jp>, plain@EXAMPLE.jp (Plain Name)",
                                "Cc: <MAILER-DAEMON>", body="x"))
    assert parsed.from_ == [Address("山田 太郎㈱", "taro.yamada@example.jp")]
    assert parsed.to == [Address("佐藤", "sato@example.jp"), Address("Plain Name", "plain@example.jp")]
    assert parsed.cc == [Address("", "mailer-daemon")]


@pytest.mark.parametrize("value,expected", [
    ("unlisted-recipients:; (no To-header on input)", []),
    ("undisclosed-recipients:;", []),
    ("Team: a@example.jp, B <b@example.jp>;, c@example.jp", ["a@example.jp", "b@example.jp", "c@example.jp"]),
    ("", []),
    (",,,;;;:::", []),
    ('"unterminated <a@example.jp', ["a@example.jp"]),
    ("<<<>>> (((", []),
    ("\x00\udcff@\udcfe", ["\udcff@\udcfe"]),
    ('"Doe, John" <john@example.jp>', ["john@example.jp"]),
    ("<@relay.example:route@example.jp>", ["route@example.jp"]),
    ("mailto:Someone@Example.jp", ["someone@example.jp"]),
])
def test_parse_addresses_never_raises(value, expected):
    """Groups, garbage and empty values give a list, never an exception; the rules' address-only parse agrees."""
    found = parse_addresses(value)
    assert parse_emails(value) == [a.email for a in found]
    if expected and "\udcff" in expected[0]:
        assert len(found) == 1 and "@" in found[0].email and "\x00" not in found[0].email
        found[0].email.encode("utf-8")
    else:
        assert [a.email for a in found] == expected


def test_unlisted_recipients_in_a_message():
    """The header that makes policy.default raise AttributeError gives an empty To here."""
    parsed = parse_message(mail("From: a@example.jp", "To: unlisted-recipients:; (no To-header on input)", body="x"))
    assert parsed.to == [] and parsed.from_ == [Address("", "a@example.jp")]


def test_message_ids_references_and_date():
    """Ids without <> and whitespace, References in order, Date timezone-aware."""
    parsed = parse_message(mail("Message-ID: < abc.123@mail.example.jp >",
                                "In-Reply-To: <first@example.jp> <second@example.jp>",
                                "References: <r1@example.jp>\r\n <r2@example.jp> <r1@example.jp>\r\n\t<r3@example.jp>",
                                "Date: Fri, 1 Nov 2024 09:30:00 +0900 (JST)", body="x"))
    assert parsed.message_id == "abc.123@mail.example.jp"
    assert parsed.in_reply_to == "first@example.jp"
    assert parsed.references == ["r1@example.jp", "r2@example.jp", "r3@example.jp"]
    assert parsed.date == datetime(2024, 11, 1, 9, 30, tzinfo=timezone(timedelta(hours=9)))
    assert parsed.date.utcoffset() == timedelta(hours=9)


def test_missing_message_id_and_bad_date():
    """No Message-ID gives None; an unreadable Date gives None and a defect; -0000 counts as UTC."""
    parsed = parse_message(mail("From: a@example.jp", "Message-ID:   ", "Date: yesterday-ish", body="x"))
    assert parsed.message_id is None and parsed.in_reply_to is None and parsed.references == []
    assert parsed.date is None and "date" in parsed.defects
    assert parse_message(mail("Subject: x", body="x")).message_id is None
    unknown_zone = parse_message(mail("Date: Fri, 1 Nov 2024 00:00:00 -0000"))
    assert unknown_zone.date == datetime(2024, 11, 1, tzinfo=timezone.utc)


# --- bodies --------------------------------------------------------------------------------------------------

def test_iso2022jp_body_with_nec_characters():
    """A 7-bit ISO-2022-JP body with ①㈱Ⅱ㍉ decodes through the CP50220 path; CRLF becomes LF."""
    body = jis("お世話になっております。\r\n①㈱Ⅱ㍉ テスト\r\n")
    parsed = parse_message(mail("Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit",
                                body=body))
    assert parsed.text == "お世話になっております。\n①㈱Ⅱ㍉ テスト\n"
    assert parsed.html is None and parsed.defects == []


def test_shift_jis_and_euc_jp_bodies():
    """Shift_JIS (quoted-printable, with NEC characters) and EUC-JP (base64, with ㎝) bodies."""
    sjis = "①見積書をお送りします。～".encode("cp932")
    quoted = "".join(f"={byte:02X}" for byte in sjis)
    parsed = parse_message(mail('Content-Type: text/plain; charset="Shift_JIS"',
                                "Content-Transfer-Encoding: quoted-printable", body=quoted))
    assert parsed.text == "①見積書をお送りします。～"
    euc = base64.b64encode("長さ10㎝の部品".encode("euc_jis_2004")).decode()
    parsed = parse_message(mail("Content-Type: text/plain; charset=EUC-JP", "Content-Transfer-Encoding: base64",
                                body=euc))
    assert parsed.text == "長さ10㎝の部品" and parsed.defects == []


def test_mislabelled_charset_is_flagged_but_readable():
    """EUC-JP bytes declared as ISO-2022-JP (au/ezweb bounces do this): right text, charset_fallback."""
    parsed = parse_message(mail("Content-Type: text/plain; charset=iso-2022-jp",
                                body="配信できませんでした".encode("euc_jp")))
    assert parsed.text == "配信できませんでした" and "charset_fallback" in parsed.defects


def test_unknown_charset_x_unknown():
    """charset=x-unknown (LookupError for get_content()) decodes by guessing, flagged."""
    parsed = parse_message(mail("Content-Type: text/plain; charset=x-unknown", body="こんにちは".encode()))
    assert parsed.text == "こんにちは" and parsed.defects == ["charset_fallback"]


def test_multipart_alternative_text_and_html():
    """Both alternatives come back decoded, no attachments; text/enriched alternatives are skipped."""
    raw = mail("Content-Type: multipart/alternative; boundary=----=_Part_0_1", body=(  # unquoted "=": still works
        "------=_Part_0_1\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode("本文です".encode()).decode() + "\r\n"
        "------=_Part_0_1\r\nContent-Type: text/enriched\r\n\r\n<bold>x</bold>\r\n"
        "------=_Part_0_1\r\nContent-Type: text/html; charset=ISO-2022-JP\r\n\r\n").encode()
        + jis("<p>本文です①</p>") + b"\r\n------=_Part_0_1--\r\n")
    parsed = parse_message(raw)
    assert parsed.text == "本文です"
    assert parsed.html == "<p>本文です①</p>"
    assert parsed.attachments == [] and parsed.defects == []


def test_attachments_with_japanese_rfc2231_and_encoded_word_names():
    """RFC 2231 (UTF-8, and ISO-2022-JP continuations) and encoded-word file names; bytes and sizes exact."""
    pdf = b"%PDF-1.4 \x00\xff binary"
    encoded = base64.b64encode(pdf).decode()
    jis_name = "".join(f"%{byte:02X}" for byte in jis("御見積書"))
    raw = mail("Content-Type: multipart/mixed; boundary=\"b1\"", body=(
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n添付します\r\n"
        "--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8%EF%BC%88%E2%91%A0%EF%BC%89.pdf"
        f"\r\n\r\n{encoded}\r\n"
        "--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment;\r\n filename*0*=ISO-2022-JP'ja'{jis_name};\r\n filename*1=.pdf\r\n\r\n"
        f"{encoded}\r\n"
        f"--b1\r\nContent-Type: application/vnd.ms-excel;\r\n name=\"{b_word('', 'ISO-2022-JP', jis('②売上㈱.xls'))}\"\r\n"
        f"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment\r\n\r\n{encoded}\r\n"
        "--b1--\r\n").encode())
    parsed = parse_message(raw)
    assert parsed.text == "添付します"
    assert [(a.filename, a.content_type, a.size, a.inline) for a in parsed.attachments] == [
        ("見積書（①）.pdf", "application/pdf", len(pdf), False),
        ("御見積書.pdf", "application/pdf", len(pdf), False),
        ("②売上㈱.xls", "application/vnd.ms-excel", len(pdf), False)]
    assert all(a.content == pdf for a in parsed.attachments)


def test_inline_cid_image_and_outlook_style_referenced_attachment():
    """Content-ID images are inline with the id unbracketed; one the HTML references is inline despite
    Content-Disposition: attachment; an unreferenced attachment is not."""
    png = b"\x89PNG\r\n\x1a\n fake"
    encoded = base64.b64encode(png).decode()
    raw = mail("Content-Type: multipart/mixed; boundary=outer", body=(
        "--outer\r\nContent-Type: multipart/related; boundary=rel\r\n\r\n"
        "--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        '<img src="cid:logo@example.jp"><img src="CID:chart@Example.jp">\r\n'
        "--rel\r\nContent-Type: image/png\r\nContent-ID: < logo@example.jp >\r\nContent-Transfer-Encoding: base64\r\n"
        f"\r\n{encoded}\r\n"
        "--rel\r\nContent-Type: image/png; name=chart.png\r\nContent-ID: <chart@Example.jp>\r\n"
        f"Content-Disposition: attachment; filename=chart.png\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n"
        "--rel--\r\n"
        "--outer\r\nContent-Type: image/png\r\nContent-Disposition: inline; filename=photo.png\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n"
        "--outer--\r\n").encode())
    parsed = parse_message(raw)
    assert parsed.text is None and "cid:logo@example.jp" in parsed.html
    assert [(a.filename, a.content_id, a.inline, a.size) for a in parsed.attachments] == [
        ("attachment-1.png", "logo@example.jp", True, len(png)),
        ("chart.png", "chart@Example.jp", True, len(png)),
        ("photo.png", None, False, len(png))]


def test_forwarded_message_is_one_attachment():
    """message/rfc822 becomes forwarded.eml holding the inner message's bytes; its parts are not listed."""
    inner = mail("From: inner@example.jp", "Subject: " + b_word("", "ISO-2022-JP", jis("転送元①")),
                 "Content-Type: multipart/mixed; boundary=in", body=(
                     "--in\r\nContent-Type: text/plain\r\n\r\ninner body\r\n"
                     "--in\r\nContent-Type: application/zip; name=a.zip\r\n\r\nPK\r\n--in--\r\n"))
    raw = mail("From: outer@example.jp", "Subject: Fwd: test", "Content-Type: multipart/mixed; boundary=out",
               body=b"--out\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
               b"--out\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--out--\r\n")
    parsed = parse_message(raw)
    assert parsed.text == "see below"
    [forwarded] = parsed.attachments
    assert (forwarded.filename, forwarded.content_type, forwarded.inline) == ("forwarded.eml", "message/rfc822", False)
    assert forwarded.size == len(forwarded.content)
    again = parse_message(forwarded.content)
    assert again.subject == "転送元①" and again.text == "inner body"
    assert [a.filename for a in again.attachments] == ["a.zip"]


def test_nul_bytes_never_reach_the_result():
    """NUL in the body, a header and a file name are removed."""
    raw = mail("Subject: a\x00b", "Content-Type: multipart/mixed; boundary=b", body=(
        "--b\r\nContent-Type: text/plain\r\n\r\nline\x00one\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-16le\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode("<p>\x00x</p>".encode("utf-16le")).decode() + "\r\n"
        "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"n\x00.txt\"\r\n\r\nz\r\n"
        "--b--\r\n").encode())
    parsed = parse_message(raw)
    assert (parsed.subject, parsed.text, parsed.html) == ("ab", "lineone", "<p>x</p>")
    assert parsed.attachments[0].filename == "n.txt"
    assert_clean(parsed)


@pytest.mark.parametrize("headers,expected", [
    (["Auto-Submitted: auto-replied"], True),
    (["Auto-Submitted: auto-generated (postmaster-notification)"], True),
    (["Auto-Submitted: no"], False),
    (["X-Autoreply: yes"], True),
    (["X-Autorespond: vacation"], True),
    (["Precedence: bulk"], True),
    (["Precedence: junk"], True),
    (["Precedence: auto_reply"], True),
    (["Precedence: list"], False),
    (["Content-Type: multipart/report; report-type=delivery-status; boundary=r"], True),
    (["Content-Type: multipart/report; report-type=\"disposition-notification\"; boundary=r"], True),
    ([], False),
])
def test_auto_submitted(headers, expected):
    """Auto replies, bulk mail, DSNs and MDNs are marked; ordinary mail is not."""
    body = "--r\r\nContent-Type: text/plain\r\n\r\nx\r\n--r--\r\n" if any("report" in h for h in headers) else "x"
    assert parse_message(mail("From: a@example.jp", *headers, body=body)).auto_submitted is expected


def test_delivery_status_part_marks_a_bounce():
    """A message/delivery-status part alone (no report-type) is enough, and it is kept as an attachment."""
    raw = mail("Content-Type: multipart/mixed; boundary=r", body=(
        "--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.jp\r\n\r\nFinal-Recipient: rfc822; x@example.jp\r\nAction: failed\r\n"
        "--r--\r\n"))
    parsed = parse_message(raw)
    assert parsed.auto_submitted
    assert parsed.attachments[0].filename == "delivery-status.txt"
    assert b"Action: failed" in parsed.attachments[0].content


# --- subjects for threading ----------------------------------------------------------------------------------

@pytest.mark.parametrize("subject,expected", [
    ("Re: 見積書の件", "見積書の件"),
    ("RE: RE: Re: 見積書の件", "見積書の件"),
    ("Fwd: FW: Fw: 見積書の件", "見積書の件"),
    ("返信: 転送: 見積書の件", "見積書の件"),
    ("Ｒｅ：　ＲＥ：見積書の件", "見積書の件"),
    ("Re[2]: Re(3): AW: WG: 見積書の件", "見積書の件"),
    ("[ml:00123] Re: [ml:00120] Meeting  Notes", "meeting notes"),
    ("［重要］ Re: 見積書の件", "見積書の件"),
    ("【至急】見積書の件", "【至急】見積書の件"),
    ("[見積書]", "[見積書]"),
    ("  Ｍｅｅｔｉｎｇ\tＮＯＴＥＳ  ", "meeting notes"),
    ("Report: 売上", "report: 売上"),
    ("Re:", ""),
    ("", ""),
])
def test_normalise_subject(subject, expected):
    """Reply/forward markers and list tags go at any depth, full-width folds to ASCII, case folds."""
    assert normalise_subject(subject) == expected


def test_normalise_subject_is_linear_on_many_prefixes():
    """Ten thousand "Re: " prefixes are stripped in one pass."""
    start = time.perf_counter()
    assert normalise_subject("Re: " * 10000 + "x") == "x"
    assert time.perf_counter() - start < 1


# --- pathological mail ---------------------------------------------------------------------------------------

def test_huge_to_header_of_encoded_words_parses_in_bounded_time():
    """A 135 kB+ To header of encoded words (email.utils.getaddresses hits RecursionError on such headers)."""
    names = [b_word("", "ISO-2022-JP", jis(f"担当者{i}㈱")) for i in range(1500)]
    to = ",\r\n\t".join(f"{name} <User{i}@Example.JP>" for i, name in enumerate(names))
    junk = "\r\n\t".join(["=?utf-8?Q?date=3E2017-08-20T10:08:28.617=3C/pr?="] * 1000)  # words with no address
    raw = mail("From: a@example.jp", f"To: {to},\r\n\t{junk}", "Subject: many", body="x")
    assert len(raw) > 135_000
    start = time.perf_counter()
    parsed = parse_message(raw)
    elapsed = time.perf_counter() - start
    print(f"135 kB To header: {elapsed * 1000:.0f} ms")
    assert elapsed < 2
    assert len(parsed.to) == 1500
    assert parsed.to[7] == Address("担当者7㈱", "user7@example.jp")
    assert "time_budget" not in parsed.defects


def test_330_part_message_parses_in_bounded_time():
    """330 parts (as in the corpus' php issue408) parse well inside the budget, every attachment kept."""
    parts = ["--many\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n本文\r\n"]
    parts += [f"--many\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
              f"Content-Disposition: attachment; filename=\"file{i}.bin\"\r\n\r\n"
              f"{base64.b64encode(bytes([i % 256]) * 200).decode()}\r\n" for i in range(329)]
    raw = mail("Content-Type: multipart/mixed; boundary=many", body="".join(parts) + "--many--\r\n")
    start = time.perf_counter()
    parsed = parse_message(raw)
    elapsed = time.perf_counter() - start
    print(f"330 parts: {elapsed * 1000:.0f} ms")
    assert elapsed < 2
    assert parsed.text == "本文" and len(parsed.attachments) == 329
    assert parsed.attachments[-1].filename == "file328.bin" and parsed.attachments[-1].size == 200


def test_part_cap_and_time_budget_keep_what_was_read():
    """Past 500 parts, or past the time budget, the walk stops and says so; the headers are kept."""
    parts = "".join(f"--m\r\nContent-Type: application/octet-stream; name=p{i}\r\n\r\nx\r\n" for i in range(600))
    raw = mail("Subject: cap", "Content-Type: multipart/mixed; boundary=m", body=parts + "--m--\r\n")
    capped = parse_message(raw)
    assert "part_limit" in capped.defects and len(capped.attachments) == 499
    out_of_time = parse_message(raw, time_budget=0)
    assert out_of_time.subject == "cap" and "time_budget" in out_of_time.defects
    assert out_of_time.attachments == []


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff garbage",
    b"Subject: header only\r\nFrom: a@example.jp",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\ntrunc",
    b"Content-Type: multipart/mixed\r\n\r\nno boundary at all",
    b"Content-Type: text/plain; charset=\"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: application/pdf; name*=x; name*0=y\r\n\r\n%PDF",
    b"\xef\xbb\xbfSubject: BOM\r\n\r\nx",
    b"From: a\r\n\tb\r\n" * 1000,
    bytes(range(256)) * 4,
])
def test_broken_input_never_raises(raw):
    """Empty, binary, header-only, truncated and contradictory input all yield a ParsedMessage."""
    parsed = parse_message(raw)
    assert isinstance(parsed, ParsedMessage)
    assert_clean(parsed)


def test_random_bytes_never_raise():
    """Fuzz: mutated copies of a real-looking message never raise."""
    base = mail("From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <a@example.jp>", "To: b@example.jp",
                "Content-Type: multipart/mixed; boundary=z", body=b"--z\r\nContent-Type: text/plain; "
                b"charset=iso-2022-jp\r\n\r\n" + jis("①テスト") + b"\r\n--z\r\nContent-Type: message/rfc822\r\n\r\n"
                b"Subject: in\r\n\r\nx\r\n--z--\r\n")
    rng = random.Random(7)
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        assert_clean(parse_message(bytes(data)))


def test_deep_nesting_keeps_the_headers():
    """Thousands of nested multiparts (the stdlib parser hits its recursion limit) still give the headers."""
    depth = 2000
    nested = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                      for i in range(depth))
    parsed = parse_message(mail("From: a@example.jp", "Subject: deep", "Content-Type: multipart/mixed; boundary=b0",
                                body=nested))
    assert parsed.subject == "deep" and parsed.from_ == [Address("", "a@example.jp")]
    assert "structure" in parsed.defects


def test_header_lines_the_stdlib_would_push_into_the_body():
    """An unindented fold (qmail "by localhost") and "Subject  :" spacing do not end the headers early."""
    raw = (b"Received: from unknown (HELO lists.example.jp)\r\nby localhost with SMTP; 19 Nov 2014 08:46:08 -0000\r\n"
           b"From  : a@example.jp\r\nSubject: kept\r\n\r\nbody\r\n")
    parsed = parse_message(raw)
    assert (parsed.subject, parsed.from_, parsed.text) == ("kept", [Address("", "a@example.jp")], "body\n")


def test_a_nul_in_the_raw_message_is_flagged_not_dropped_silently():
    """Servers other than Dovecot pass NUL through: it is removed, and the message says it was altered."""
    parsed = parse_message(b"From: a@client.example\r\nSubject: x\x00y\r\n\r\nline\x00one\r\n")
    assert (parsed.subject, parsed.text.strip()) == ("xy", "lineone")
    assert "nul_removed" in parsed.defects
    assert "nul_removed" not in parse_message(b"From: a@client.example\r\nSubject: xy\r\n\r\nline\r\n").defects


def _base64_body(size: int, seed: int, line: int = 76) -> bytes:
    """`size` random bytes as base64 in lines of `line` characters with CRLF (the last one shorter, padded)."""
    import base64
    import random
    text = base64.b64encode(random.Random(seed).randbytes(size))
    return b"".join(text[i:i + line] + b"\r\n" for i in range(0, len(text), line))


def _big_messages() -> dict[str, bytes]:
    """Messages whose bodies are set aside before parsing (over BIG_RUN_LINES lines of base64), in every shape."""
    head = b"From: a@example.jp\r\nTo: b@example.jp\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
    pdf = (b"--b\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + _base64_body(1_200_000, 1))
    text = b"--b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n\xe6\x9c\xac\xe6\x96\x87\r\n"
    return {
        "attachment": head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + text + pdf + b"--b--\r\n",
        "single part": head + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + _base64_body(1_100_001, 2),
        "bad padding": head + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + _base64_body(1_100_001, 3)[:-5] + b"\r\n",
        "not base64 by its header": head + b"Content-Type: text/plain\r\n\r\n" + _base64_body(1_000_000, 4),
        "64-character lines": head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + text
        + b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + _base64_body(1_000_000, 5, line=64) + b"--b--\r\n",
        "attached message": head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + text
        + b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + head
        + b'Content-Type: multipart/mixed; boundary="c"\r\n\r\n' + pdf.replace(b"--b", b"--c") + b"--c--\r\n"
        + b"--b--\r\n",
    }


@pytest.mark.parametrize("shape", list(_big_messages()))
def test_big_base64_bodies_set_aside_parse_exactly_as_the_stdlib_parses_them(shape, monkeypatch):
    """The memory-saving path for big attachments gives the same result as parsing everything with the stdlib."""
    from portal.mailsync import parse
    raw = _big_messages()[shape]
    assert parse._set_aside_big_runs(raw)[1], "the message must take the set-aside path"
    fast = parse_message(raw)
    monkeypatch.setattr(parse, "BIG_RUN_LINES", 10 ** 9)
    assert parse._set_aside_big_runs(raw)[1] == {}
    assert fast == parse_message(raw)
