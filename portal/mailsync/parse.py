"""Raw message bytes -> ParsedMessage: the MIME walk (bodies, attachments, defects); headers.py decodes each header."""
import binascii
import email
import email.policy
import io
import mimetypes
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesHeaderParser

from portal.mailsync.charsets import clean, decode_text, safe_filename
from portal.mailsync.headers import (ENCODED_WORD, Address, decode_addresses, decode_header, header_date, message_ids,
                                     squash, unfold, word_bytes)

MAX_PARTS = 500
# Delivery and read reports (and ARF abuse reports, just as automatic) never come from a person.
DSN_TYPES = {"message/delivery-status", "message/disposition-notification", "message/global-delivery-status",
             "message/global-disposition-notification", "message/feedback-report"}
# Alternatives nobody reads once text/plain or text/html exist: skipped, not listed as attachments.
SKIPPED_ALTERNATIVES = {"text/enriched", "text/richtext", "text/watch-html"}
DEFAULT_NAMES = {
    "message/rfc822": "forwarded.eml", "message/global": "forwarded.eml",
    "message/delivery-status": "delivery-status.txt", "message/global-delivery-status": "delivery-status.txt",
    "message/disposition-notification": "disposition-notification.txt",
    "message/global-disposition-notification": "disposition-notification.txt",
    "message/feedback-report": "feedback-report.txt",
    "text/rfc822-headers": "headers.txt", "message/global-headers": "headers.txt",
}


@dataclass(frozen=True)
class ParsedAttachment:
    """A non-body part: decoded file name, type, bytes, and whether the HTML shows it inline (cid:)."""

    filename: str
    content_type: str
    size: int
    content: bytes = field(repr=False)
    content_id: str | None
    inline: bool


# Defect codes: charset_fallback (a body needed a guess), header_decode (a header or file name did), structure (the
# MIME tree was damaged or repaired), date (Date present but unreadable), part_limit (more than MAX_PARTS parts),
# time_budget (the walk ran out of time). Parts after a limit or the deadline are missing from the result.
@dataclass
class ParsedMessage:
    """What the importer stores of one message; `defects` says what had to be guessed or was cut short."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    date: datetime | None = None
    text: str | None = None
    html: str | None = None
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    auto_submitted: bool = False


# The MIME tree is built under this compat32 variant, not policy.default: the feed parser is the same code, but
# policy.default builds a header object for every Content-Type lookup (10x slower on the corpus: 2.3 s against
# 0.2 s), drops unquoted boundaries holding "=" (boundary=----=_Part_1, common from old Outlook and Java mailers),
# and can raise on odd headers. Unfolding here keeps folded quoted boundaries working, which compat32 alone breaks.
class _RawPolicy(email.policy.Compat32):
    """compat32 whose header lookups return the raw value unfolded: never a Header object or a parse error."""

    def header_fetch_parse(self, name, value):
        """The received value without line breaks; 8-bit bytes stay surrogate escapes for our own decoding."""
        return unfold(value).strip()


_RAW = _RawPolicy()
# Regenerating an attached message must keep its header lines byte for byte: no refolding, no re-encoding.
_VERBATIM = email.policy.default.clone(refold_source="none", max_line_length=0, linesep="\r\n")

_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_SPACED_NAME = re.compile(rb"([!-9;-~]+)[ \t]+:")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")

def _flag(result: ParsedMessage, code: str) -> None:
    """Record a defect once."""
    if code not in result.defects:
        result.defects.append(code)


def _content_type(part: Message) -> str:
    """The part's type, lower-case, without comments or stray whitespace ("text/plain (body)" is text/plain)."""
    return re.sub(r"\([^)]*\)|\s", "", part.get_content_type()) or "text/plain"


def _first(part: Message, name: str) -> str | None:
    """The first raw value of a header, or None."""
    values = part.get_all(name)
    return str(values[0]) if values else None


def _repair_header_block(raw: bytes) -> tuple[bytes, bool]:
    """Drop a UTF-8 BOM and mend header lines the parser would take for the body; returns (bytes, repaired)."""
    repaired = raw.startswith(b"\xef\xbb\xbf")
    raw = raw[3:] if repaired else raw
    blank = _BLANK_LINE.search(raw)
    if not blank:  # without a blank line nobody can tell where the headers end: leave it to the parser
        return raw, repaired
    lines = raw[:blank.start()].split(b"\n")
    headers = [i for i, line in enumerate(lines) if _HEADER_LINE.match(line)]
    # "Subject  : x" is obsolete but legal syntax; a stray line with header lines after it is a fold someone
    # forgot to indent (qmail's "by localhost", long Exchange headers). Left alone, either one ends the headers
    # and everything after it, From and Subject included, becomes body text. Line 0 may be an mbox "From " line.
    for i in range(headers[-1] + 1 if headers else 0):
        line = lines[i]
        spaced = _SPACED_NAME.match(line)
        if spaced:
            lines[i] = spaced.group(1) + b":" + line[spaced.end():]
        elif i and line.strip() and line[:1] not in b" \t" and not _HEADER_LINE.match(line):
            lines[i] = b" " + line
        else:
            continue
        repaired = True
    return b"\n".join(lines) + raw[blank.start():], repaired


def _charset_hint(root: Message) -> str | None:
    """The charset raw 8-bit headers were most likely written in: the first declared one down the first parts,
    else the charset of the first encoded word among the headers."""
    part = root
    for _ in range(8):
        charset = part.get_content_charset()
        if charset:
            return charset
        if not part.is_multipart() or not part.get_payload():
            break
        part = part.get_payload()[0]
    for _name, value in root.raw_items():
        match = ENCODED_WORD.search(value)
        if match:
            return match.group(1).split("*", 1)[0]
    return None


def _is_auto_submitted(root: Message) -> bool:
    """Auto-Submitted other than no, X-Autoreply, X-Autorespond, or Precedence bulk/junk/auto_reply."""
    def token(name: str) -> str | None:
        value = _first(root, name)
        return None if value is None else (unfold(value).split(";")[0].split() or [""])[0].lower()

    auto = token("Auto-Submitted")
    if auto and auto != "no":
        return True
    if any(token(name) not in (None, "no") for name in ("X-Autoreply", "X-Autorespond")):
        return True
    return token("Precedence") in ("bulk", "junk", "auto_reply")


def _read_headers(root: Message, result: ParsedMessage, hint: str | None) -> None:
    """Fill the header fields from raw values."""
    raw_id = _first(root, "Message-ID") or ""
    ids = message_ids(raw_id)
    result.message_id = ids[0] if ids else clean(re.sub(r"[\s<>]", "", raw_id)) or None
    replied = message_ids(_first(root, "In-Reply-To"))
    result.in_reply_to = replied[0] if replied else None
    references = []
    for value in root.get_all("References") or []:
        references.extend(item for item in message_ids(value) if item not in references)
    result.references = references
    subject = _first(root, "Subject")
    if subject is not None:
        result.subject, bad = decode_header(subject, hint)
        result.subject = squash(result.subject)
        if bad:
            _flag(result, "header_decode")
    for name, attribute in (("From", "from_"), ("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        found = []
        for value in root.get_all(name) or []:
            addresses, bad = decode_addresses(str(value), hint)
            found.extend(addresses)
            if bad:
                _flag(result, "header_decode")
        setattr(result, attribute, found)
    raw_date = _first(root, "Date")
    result.date = header_date(raw_date) if raw_date is not None else None
    if raw_date is not None and result.date is None:
        _flag(result, "date")
    result.auto_submitted = _is_auto_submitted(root)
    report_type = (root.get_param("report-type") or "") if _content_type(root) == "multipart/report" else ""
    if isinstance(report_type, str) and "message/" + report_type.lower() in DSN_TYPES:
        result.auto_submitted = True


def _filename(part: Message, hint: str | None) -> tuple[str | None, bool]:
    """The decoded file name (Content-Disposition filename, else Content-Type name): RFC 2231 and encoded words."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        try:
            value = part.get_param(param, None, header=header)
        except Exception:  # noqa: BLE001 - e.g. TypeError on mixed "name*" and "name*0" parameters
            return None, True
        if isinstance(value, tuple):
            charset, _language, text = value
            name, bad = decode_text(text.encode("latin-1", "surrogateescape"), charset or hint)
            if "=?" in name:  # some mailers put encoded words inside RFC 2231 values
                name, again = decode_header(name, hint)
                bad |= again
        elif value:
            name, bad = decode_header(str(value), hint)
        else:
            continue
        name = safe_filename(name)
        if name:
            return name, bad
    return None, False


def _message_bytes(part: Message, cte: str) -> bytes:
    """The bytes of an attached message/* part, regenerated verbatim from the parsed tree."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return part.get_payload(decode=True) or b""
    chunks = []
    for sub in payload:
        buffer = io.BytesIO()
        BytesGenerator(buffer, mangle_from_=False, policy=_VERBATIM).flatten(sub)
        chunks.append(buffer.getvalue())
    data = b"".join(chunks)
    if cte == "base64":  # not allowed for message/rfc822, but some mailers do it and the parser ignores it
        return word_bytes("b", data.decode("ascii", "replace"))
    if cte == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


def _default_name(content_type: str, number: int) -> str:
    """A file name for a part that has none."""
    if content_type in DEFAULT_NAMES:
        return DEFAULT_NAMES[content_type]
    return f"attachment-{number}{mimetypes.guess_extension(content_type, strict=False) or '.bin'}"


class _Walk:
    """One iterative pass over the MIME tree, collecting bodies and attachments."""

    def __init__(self, result: ParsedMessage, hint: str | None, deadline: float,
                 set_aside: dict[str, memoryview] | None = None):
        self.result, self.hint, self.deadline = result, hint, deadline
        self.set_aside = set_aside or {}  # base64 runs the parser never saw, by their marker (_set_aside_big_runs)
        self.texts: list[str] = []
        self.htmls: list[str] = []

    def run(self, root: Message) -> None:
        """Visit at most MAX_PARTS parts, depth first in document order, until the deadline."""
        stack, visited = [(root, "")], 0
        while stack:
            if visited >= MAX_PARTS:
                _flag(self.result, "part_limit")
                break
            if time.perf_counter() > self.deadline:
                _flag(self.result, "time_budget")
                break
            part, parent_type = stack.pop()
            visited += 1
            try:
                children = self.visit(part, parent_type)
            except Exception:  # noqa: BLE001 - one broken part must not lose the others
                _flag(self.result, "structure")
                continue
            stack.extend(reversed(children))
            if part.defects:
                _flag(self.result, "structure")
        # Several text parts (Apple Mail around inline images, list footers) all belong to the body.
        self.result.text = "\n".join(self.texts) if self.texts else None
        self.result.html = "\n".join(self.htmls) if self.htmls else None

    def visit(self, part: Message, parent_type: str) -> list[tuple[Message, str]]:
        """Handle one part; returns the children still to visit."""
        content_type = _content_type(part)
        if part.is_multipart() and content_type.startswith("multipart/"):
            return [(child, content_type) for child in part.get_payload()]
        if content_type in DSN_TYPES:
            self.result.auto_submitted = True
        disposition = part.get_content_disposition()
        filename, bad = _filename(part, self.hint)
        if bad:
            _flag(self.result, "header_decode")
        cte = (_first(part, "Content-Transfer-Encoding") or "").lower()
        if content_type.startswith("message/") or part.is_multipart():
            self.attach(part, content_type, filename, disposition, self.restored(_message_bytes(part, cte)))
            return []
        if content_type.startswith("multipart/"):  # a multipart without a usable boundary: its text is all we have
            content_type = "text/plain"
        payload = self.payload(part, cte)
        if content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text, bad = decode_text(payload, part.get_content_charset())
            if bad:
                _flag(self.result, "charset_fallback")
            text = text.replace("\r\n", "\n")  # IMAP hands out CRLF; one line ending in storage
            (self.texts if content_type == "text/plain" else self.htmls).append(text)
        elif not (parent_type == "multipart/alternative" and content_type in SKIPPED_ALTERNATIVES):
            self.attach(part, content_type, filename, disposition, payload)
        return []

    def payload(self, part: Message, cte: str) -> bytes:
        """The part's decoded body; a base64 body that was set aside is decoded straight from the raw bytes."""
        text = part.get_payload()
        for marker, run in self.set_aside.items() if isinstance(text, str) else ():
            if marker not in text:
                continue
            if cte == "base64" and text.startswith(marker):
                # The run is whole 4-character groups without padding: it decodes on its own, exactly as within the
                # whole body, and the stdlib decodes the short rest (padding and its defects as before).
                part.set_payload(text[len(marker):].lstrip("\r\n"))
                defects = len(part.defects)
                try:
                    rest = part.get_payload(decode=True) or b""
                    if len(part.defects) == defects:
                        return binascii.a2b_base64(run) + rest
                except Exception:  # noqa: BLE001 - handled below
                    pass
                del part.defects[defects:]  # a rest with defects: the whole body goes the stdlib's way
            part.set_payload(_put_back(text.encode("ascii", "surrogateescape"), marker, run)
                             .decode("ascii", "surrogateescape"))  # anywhere else: the stdlib's way
        return part.get_payload(decode=True) or b""

    def restored(self, data: bytes) -> bytes:
        """Bytes regenerated from the tree (an attached message) with the set-aside runs back in place."""
        for marker, run in self.set_aside.items():
            data = _put_back(data, marker, run)
        return data

    def attach(self, part: Message, content_type: str, filename: str | None, disposition: str | None,
               content: bytes) -> None:
        """Add one attachment."""
        raw_id = _first(part, "Content-ID")
        content_id = (clean(re.sub(r"[\s<>]", "", raw_id)) or None) if raw_id else None
        name = filename or _default_name(content_type, len(self.result.attachments) + 1)
        # Inline means "shown inside the HTML": it needs a Content-ID. An inline disposition without one is
        # how Apple Mail attaches ordinary files, and those must stay visible as attachments.
        inline = content_id is not None and disposition != "attachment"
        self.result.attachments.append(ParsedAttachment(name, content_type, len(content), content, content_id, inline))


def _mark_referenced_inline(result: ParsedMessage) -> None:
    """Parts the HTML shows through cid: are inline whatever their disposition says (Outlook says attachment)."""
    if not result.html:
        return
    html = result.html.lower()
    result.attachments = [replace(a, inline=True) if a.content_id and not a.inline and f"cid:{a.content_id.lower()}"
                          in html else a for a in result.attachments]


def _cleaned(result: ParsedMessage) -> ParsedMessage:
    """Every string through charsets.clean: no NUL, no lone surrogate reaches the database.

    A removed NUL is flagged (`nul_removed`): what is stored then differs from what was sent, and the reader should
    know. Dovecot hides NULs (it sends 0x80), other servers pass them through.
    """
    removed_nul = False

    def scrub(text: str) -> str:
        """charsets.clean, noting whether a NUL went."""
        nonlocal removed_nul
        removed_nul = removed_nul or "\x00" in text
        return clean(text)

    def people(addresses):
        return [Address(scrub(a.name), scrub(a.email)) for a in addresses]

    def optional(text):
        return None if text is None else scrub(text)

    cleaned = ParsedMessage(
        message_id=optional(result.message_id), in_reply_to=optional(result.in_reply_to),
        references=[scrub(item) for item in result.references], subject=scrub(result.subject),
        from_=people(result.from_), to=people(result.to), cc=people(result.cc), bcc=people(result.bcc),
        date=result.date, text=optional(result.text), html=optional(result.html),
        attachments=[replace(a, filename=scrub(a.filename), content_type=scrub(a.content_type),
                             content_id=optional(a.content_id)) for a in result.attachments],
        defects=list(result.defects), auto_submitted=result.auto_submitted)
    if removed_nul:
        _flag(cleaned, "nul_removed")
    return cleaned


# A body that starts with at least this many lines of whole base64 groups (about 1 MB) is set aside before parsing:
# the stdlib parser holds every line of a body as its own string, about 7 times the message's size at its peak.
BIG_RUN_LINES = 13_000
_BODY_START = re.compile(rb"\n\r?\n")
_BASE64_LINE = re.compile(rb"(?:[A-Za-z0-9+/]{4}){15,19}\r?\n")  # whole groups, no padding: 60 to 76 characters


def _base64_run_end(raw: bytes, start: int) -> int:
    """Where the run of whole-group base64 lines starting at `start` ends (a line at a time: no regex backtracking
    state for hundreds of thousands of lines)."""
    position, match = start, _BASE64_LINE.match(raw, start)
    while match:
        position = match.end()
        match = _BASE64_LINE.match(raw, position)
    return position


def _put_back(data: bytes, marker: str, run: memoryview) -> bytes:
    """The set-aside run in place of its marker line (the line's CRLF is the run's last one)."""
    if marker.encode() + b"\r\n" in data:
        return data.replace(marker.encode() + b"\r\n", bytes(run))
    return data.replace(marker.encode(), bytes(run).removesuffix(b"\r\n").removesuffix(b"\n"))


def _set_aside_big_runs(raw: bytes) -> tuple[bytes, dict[str, memoryview]]:
    """The message with each big base64 run at the start of a body replaced by a marker line, and the runs."""
    if len(raw) < BIG_RUN_LINES * 60:
        return raw, {}
    token = secrets.token_hex(12)
    pieces, set_aside, position, view = [], {}, 0, memoryview(raw)
    for blank in _BODY_START.finditer(raw):
        start = blank.end()
        if start < position:
            continue
        end = _base64_run_end(raw, start)
        if raw.count(b"\n", start, end) < BIG_RUN_LINES:
            continue
        marker = f"SETASIDE{token}N{len(set_aside)}"
        pieces += [view[position:start], marker.encode() + b"\r\n"]
        set_aside[marker] = view[start:end]
        position = end
    if not set_aside:
        return raw, {}
    pieces.append(view[position:])
    return b"".join(pieces), set_aside


def parse_message(raw: bytes, time_budget: float = 2.0) -> ParsedMessage:
    """Parse one message; never raises: whatever could not be read is listed in `defects`."""
    deadline = time.perf_counter() + time_budget
    result = ParsedMessage()
    try:
        raw, repaired = _repair_header_block(bytes(raw))
        if repaired:
            _flag(result, "structure")
        try:
            reduced, set_aside = _set_aside_big_runs(raw)
            root, walk = email.message_from_bytes(reduced, policy=_RAW), True
        except Exception:  # noqa: BLE001 - e.g. RecursionError on thousands of nested parts: keep the headers
            root, walk, set_aside = BytesHeaderParser(policy=_RAW).parsebytes(raw), False, {}
            _flag(result, "structure")
        hint = _charset_hint(root)
        _read_headers(root, result, hint)
        if walk:
            _Walk(result, hint, deadline, set_aside).run(root)
            _mark_referenced_inline(result)
    except Exception:  # noqa: BLE001 - a message must never stop an import pass; keep what was read
        _flag(result, "structure")
    if b"\x00" in raw:  # a raw NUL may be dropped before _cleaned sees it (Message-ID, Content-ID)
        _flag(result, "nul_removed")
    try:
        return _cleaned(result)
    except Exception:  # noqa: BLE001
        return ParsedMessage(defects=["structure"])
