"""Hostile attachment file names (issue 10, hole 7): cleaned at import, and again at download."""
import pytest

from portal.mailsync.charsets import MAX_FILENAME_LENGTH, safe_filename
from portal.mailsync.parse import parse_message

HOSTILE = "UTF-8''evil%0D%0AContent-Type%3A%20text%2Fhtml%0D%0A%0D%0A%3Cscript%3E.txt"


def _mail_with_attachment(disposition: str) -> bytes:
    return ("From: a@client.example\r\nTo: b@example.jp\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
            f"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; {disposition}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n").encode()


@pytest.mark.parametrize("disposition", [f"filename*={HOSTILE}", 'filename="=?utf-8?q?a=0D=0Ab=00c.txt?="',
                                         "filename*=UTF-8''%E2%80%A8..%2F..%2Fetc%2Fpasswd"])
def test_an_imported_file_name_holds_no_control_character_nor_path(disposition):
    """%0D%0A in filename*, an encoded CR/LF/NUL, a Unicode line separator and a path all come out harmless."""
    name = parse_message(_mail_with_attachment(disposition)).attachments[0].filename
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029/\\" for c in name), repr(name)
    assert name


@pytest.mark.parametrize("raw, cleaned", [("見積書.pdf", "見積書.pdf"), ("a\r\nb.txt", "a b.txt"),
                                          ("C:\\TEMP\\x.png", "x.png"), ("\x00\t", ""), (None, "")])
def test_safe_filename(raw, cleaned):
    """The one cleaning rule both places use."""
    assert safe_filename(raw) == cleaned


def test_a_long_name_keeps_its_extension():
    """Past 255 characters the name is cut, keeping what opens the file."""
    name = safe_filename("資" * 400 + ".xlsx")
    assert len(name) == MAX_FILENAME_LENGTH and name.endswith(".xlsx")
