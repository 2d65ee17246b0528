"""Every message of the shared real-world corpus parses, cleanly and fast; Japanese ones decode as checked by hand."""
import os
import re
import time
from pathlib import Path

import pytest

from email.parser import BytesParser
from email.policy import compat32

from portal.mailsync.headers import Address, parse_addresses, parse_emails
from portal.mailsync.parse import parse_message
from tests.mailtext import assert_clean

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
NOT_MAIL = re.compile(r"^(LICENSE|COPYING|README|SOURCES|MANIFEST)", re.IGNORECASE)


def corpus_files() -> list[Path]:
    """The message files of the corpus (licence and index files left out)."""
    if not CORPUS.is_dir():
        return []
    return sorted(path for path in CORPUS.rglob("*") if path.is_file() and not NOT_MAIL.match(path.name))


FILES = corpus_files()


def require_corpus() -> None:
    """Skip without the corpus on a workstation; under CI a missing corpus is a failure, not a skip."""
    if FILES:
        return
    message = f"mail corpus not found at {CORPUS}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def parse_file(relative: str):
    """Parse one corpus file by its path under the corpus."""
    require_corpus()
    return parse_message((CORPUS / relative).read_bytes())


@pytest.mark.parametrize("path", FILES or [None], ids=lambda path: str(path.relative_to(CORPUS)) if path else "missing")
def test_every_corpus_message_parses_cleanly(path):
    """No exception, no NUL or lone surrogate anywhere, sizes matching contents."""
    require_corpus()
    parsed = parse_message(path.read_bytes())
    assert_clean(parsed)
    assert all(a.size == len(a.content) for a in parsed.attachments)
    assert all(a.email == a.email.lower() for a in parsed.from_ + parsed.to + parsed.cc + parsed.bcc)
    assert parsed.date is None or parsed.date.tzinfo is not None


def test_rules_address_only_parse_agrees_on_every_corpus_header():
    """The import rules skip decoding display names; they must still see exactly the addresses the full parse sees."""
    require_corpus()
    compared = 0
    for path in FILES:
        headers = BytesParser(policy=compat32).parsebytes(path.read_bytes(), headersonly=True)
        for name in ("from", "to", "cc", "bcc"):
            for value in headers.get_all(name, []):
                value = str(value)
                assert parse_emails(value) == [a.email for a in parse_addresses(value)], (path.name, value)
                compared += 1
    assert compared > len(FILES)


def test_whole_corpus_in_bounded_time():
    """All messages in well under a minute (about 0.8 s on the 2-core dev box); no message near its budget."""
    require_corpus()
    raws = [path.read_bytes() for path in FILES]
    slowest, start = 0.0, time.perf_counter()
    for raw in raws:
        one = time.perf_counter()
        assert "time_budget" not in parse_message(raw).defects
        slowest = max(slowest, time.perf_counter() - one)
    elapsed = time.perf_counter() - start
    print(f"corpus: {len(raws)} messages, {sum(map(len, raws)) / 1e6:.1f} MB in {elapsed:.2f} s "
          f"({len(raws) / elapsed:.0f} msg/s, slowest {slowest * 1000:.0f} ms)")
    assert elapsed < 30 and slowest < 2


# Each expectation below was checked against the raw bytes with an independent decoder (stdlib iso2022_jp,
# cp932, euc_jp or utf-8 applied by hand), not by reading this parser's output.

def test_iso2022jp_subject_and_body_mimekit():
    """Thunderbird ISO-2022-JP: subject split over two encoded words, JIS body on several lines."""
    parsed = parse_file("mimekit/japanese.txt")
    assert parsed.subject == "日本語メールテスト (testing Japanese emails)"
    assert "日本語が\n正常に\n送れているか\nテスト." in parsed.text
    assert parsed.defects == []


def test_iso2022jp_subject_with_a_character_split_across_words_sisimai():
    """Exchange split "ャ" between two encoded words; the bytes are rejoined before decoding."""
    parsed = parse_file("sisimai-set-of-emails/bsd/lhost-exchange2007-04.eml")
    assert parsed.subject == "Undeliverable: キジトラ・フラッシュ/ニャーン"
    assert parsed.auto_submitted


def test_iso2022jp_returned_message_sisimai():
    """A bounce carrying the original ISO-2022-JP message: kept as forwarded.eml, which parses on its own."""
    parsed = parse_file("sisimai-set-of-emails/bsd/lhost-sendmail-51.eml")
    assert "550 : User unknown" in parsed.text and parsed.auto_submitted
    [forwarded] = [a for a in parsed.attachments if a.content_type == "message/rfc822"]
    original = parse_message(forwarded.content)
    assert (original.subject, original.text) == ("にゃーん", "ニャーン\n\n")


def test_shift_jis_body_docomo():
    """An 8-bit Shift_JIS body from a docomo handset."""
    parsed = parse_file("mikel-mail/multi_charset/japanese_shift_jis.eml")
    assert parsed.text == "あいうえお\n\nこのメールはテスト用のメールです。\n\n今後ともよろしくお願い申し上げます！\n"
    assert parsed.from_ == [Address("", "xxxxxxx@docomo.ne.jp")] and parsed.defects == []


def test_euc_jp_part_among_utf16_parts():
    """A base64 EUC-JP part next to UTF-16 ones; the broken last boundary is flagged as structure."""
    parsed = parse_file("stalwart-mail-parser/thirdparty/005.eml")
    assert "『世界人権宣言』" in parsed.text and "Test message" in parsed.text
    assert "structure" in parsed.defects


def test_euc_jp_body_labelled_iso2022jp_au_bounce():
    """au/ezweb declares ISO-2022-JP but sends EUC-JP: the Japanese text comes out, flagged."""
    parsed = parse_file("sisimai-set-of-emails/bsd/lhost-ezweb-03.eml")
    assert "送信先メールアドレスが見つかりませんでした。" in parsed.text
    assert "charset_fallback" in parsed.defects


def test_raw_utf8_subject_kddi():
    """A raw (unencoded) UTF-8 Subject header."""
    parsed = parse_file("sisimai-set-of-emails/bsd/lhost-kddi-01.eml")
    assert parsed.subject == "メールエラー通知"


def test_folded_iso2022jp_subject_with_blank_continuation_line():
    """"Re: TEST" then a whitespace-only fold and two encoded words of テスト."""
    assert parse_file("mikel-mail/rfc2822/example14.eml").subject == "Re: TEST テストテスト"


def test_corpus_outliers():
    """The 135 kB To header, the 330-part message and sendmail's unlisted-recipients group."""
    huge_to = parse_file("mimekit/stack-overflow.txt")
    assert huge_to.to == [Address("test", "test@test.com")] and huge_to.text.strip() == "Message Body"
    many = parse_file("php-mime-mail-parser/issue408.eml")
    assert len(many.attachments) == 328 and many.html and many.defects == []
    bounce = parse_file("mimekit/delivery-status.txt")
    assert bounce.to == [] and bounce.auto_submitted
    assert [a.filename for a in bounce.attachments] == ["delivery-status.txt", "forwarded.eml"]
