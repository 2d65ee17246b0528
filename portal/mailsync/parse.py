"""Raw message bytes -> ParsedMessage, decoding Japanese headers and bodies the way Japanese mail clients mean them."""
import binascii
import email
import email.policy
import io
import itertools
import mimetypes
import re
import time
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime

from portal.mailsync.charsets import clean, decode_text

MAX_PARTS = 500
_NEWLINES = re.compile(r"[\r\n]+")
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
class Address:
    """One mailbox: decoded display name and lower-cased address."""

    name: str
    email: str


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
        return _NEWLINES.sub("", value).strip()


_RAW = _RawPolicy()
# Regenerating an attached message must keep its header lines byte for byte: no refolding, no re-encoding.
_VERBATIM = email.policy.default.clone(refold_source="none", max_line_length=0, linesep="\r\n")

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_SURROGATE = re.compile("[\udc80-\udcff]")
_UNLIKELY = re.compile("[\ue000-\uf8ff\ufffd]")
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_SPACED_NAME = re.compile(rb"([!-9;-~]+)[ \t]+:")
_COMMENT = re.compile(r"\([^()]*\)")
_NOT_IN_ADDRESS = re.compile(r'[<>"]')
_ADDRESS_INSIDE = re.compile(r'[^<>"@]+@[^<>"@]+')
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_ASCII_SPACES = re.compile(r"[ \t\r\n]+")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_ADDRESS_TOKEN = re.compile(r"""
      (?P<word>=\?[^?\s]+\?[bBqQ]\?[^?]*\?=)
    | "(?P<quoted>(?:[^"\\]+|\\.)*)"?
    | <(?P<angle>[^>]*)>?
    | (?P<special>[,;:])
    | (?P<text>[^"(<,;:=]+|.)
""", re.VERBOSE | re.DOTALL)
# Reply/forward markers in the languages our customers' correspondents use, with counters like Re[2]: or Re(2):.
# Square-bracket tags ([ml:00123], ［重要］ after NFKC) go too, but only when text follows: mailing lists insert
# them mid-thread. 【...】 is left alone: Japanese senders write it as part of the subject itself.
_SUBJECT_PREFIXES = re.compile(r"""
    (?: (?:re|fwd?|aw|wg|sv|vs|antw|返信|転送|回复|转发|답장|전달) \s* (?:\[\d*\]|\(\d*\)|\^\d+)? \s* :
      | \[[^\[\]]{0,40}\](?=\s*\S)
    )\s*
""", re.VERBOSE)


def _flag(result: ParsedMessage, code: str) -> None:
    """Record a defect once."""
    if code not in result.defects:
        result.defects.append(code)


def _squash(text: str) -> str:
    """Runs of ASCII whitespace (folding leftovers, tabs) as one space; the ideographic space is content and stays."""
    return _ASCII_SPACES.sub(" ", text).strip()


def _unfold(value: str) -> str:
    """RFC 5322 unfolding: line breaks go, the whitespace after them stays."""
    return _NEWLINES.sub("", value)


def _decode_raw_text(text: str, hint: str | None) -> tuple[str, bool]:
    """Decode raw 8-bit header bytes (surrogate escapes): UTF-8, then the message's charset, then guesses."""
    if not _SURROGATE.search(text):
        return text, False
    data = text.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    if hint:
        decoded, bad = decode_text(data, hint)
        if not bad:
            return decoded, False
    decoded, bad = decode_text(data, None)
    if _UNLIKELY.search(decoded):  # the Japanese guesses read Latin-1 "Fr\xf6sche" as private-use kanji
        try:
            return data.decode("cp1252"), True
        except UnicodeDecodeError:
            pass
    return decoded, bad


def _word_bytes(encoding: str, text: str) -> bytes:
    """The bytes of one encoded word's text; sloppy base64 padding is repaired, not rejected."""
    data = text.encode("utf-8", "surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    if len(data) % 4 == 1:
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _decode_header(value: str, hint: str | None = None) -> tuple[str, bool]:
    """Decode a raw header value; returns (text, defect)."""
    value = _unfold(value)
    tokens: list[tuple[str | None, object]] = []  # (None, literal text) or (charset, encoded-word bytes)
    position, defect = 0, False
    for match in _ENCODED_WORD.finditer(value):
        between = value[position:match.start()]
        if between and not (between.isspace() and tokens and tokens[-1][0] is not None):
            tokens.append((None, between))
        try:
            data = _word_bytes(match.group(2), match.group(3))
        except (binascii.Error, ValueError):
            tokens.append((None, match.group(0)))
            defect = True
        else:
            tokens.append((match.group(1).split("*", 1)[0].lower(), data))  # RFC 2231 adds *language
        position = match.end()
    if position < len(value):
        tokens.append((None, value[position:]))
    pieces = []
    for charset, group in itertools.groupby(tokens, key=lambda token: token[0]):
        group = [payload for _, payload in group]
        if charset is None:
            for literal in group:
                text, bad = _decode_raw_text(literal, hint)
                pieces.append(text)
                defect |= bad
            continue
        # Words of one charset are decoded together: mailers split multi-byte characters across words.
        text, bad = decode_text(b"".join(group), charset)
        if bad and len(group) > 1:
            decoded = [decode_text(data, charset) for data in group]
            text, bad = "".join(text for text, _ in decoded), any(flag for _, flag in decoded)
        pieces.append(text)
        defect |= bad
    return "".join(pieces), defect


def decode_header_value(value: str) -> str:
    """Decode RFC 2047 encoded words (ISO-2022-JP via CP50220, unknown charsets guessed) and raw 8-bit text."""
    try:
        return clean(_decode_header(value or "")[0])
    except Exception:  # noqa: BLE001 - a header must never stop an import
        return clean(str(value or ""))


def _address_tokens(value: str):
    """Yield (kind, text) tokens of an address list in one linear pass; comments may nest."""
    position, length = 0, len(value)
    while position < length:
        if value[position] == "(":
            depth, end = 0, position
            while end < length:
                char = value[end]
                if char == "\\":
                    end += 1
                elif char == "(":
                    depth += 1
                elif char == ")":
                    depth -= 1
                    if depth == 0:
                        break
                end += 1
            yield "comment", value[position + 1:end]
            position = end + 1
            continue
        match = _ADDRESS_TOKEN.match(value, position)
        kind = match.lastgroup
        yield kind, match.group(kind)
        position = match.end()


def _mailbox(words: list[str], angle: str | None, comments: list[str], hint: str | None) -> tuple[Address | None, bool]:
    """One mailbox from its tokens, or None when it holds no address."""
    if angle is not None:
        address, name = angle, "".join(words)
    else:  # addr-spec form; an old-style "(Name)" comment is the only name it has
        address, name = "".join(words), " ".join(comments)
    # Whitespace and comments go, and so does a source route or "mailto:".
    address = "".join(_COMMENT.sub("", address).split()).rsplit(":", 1)[-1]
    if _NOT_IN_ADDRESS.search(address):  # an unterminated quote or bracket swallowed it: keep the address inside
        inside = _ADDRESS_INSIDE.findall(address)
        address = inside[-1] if inside else ""
    # A bare word is a name without an address (or group leftovers); <MAILER-DAEMON> is an address, if a local one.
    if "@" not in address and not (angle and address):
        return None, False
    address, bad_address = _decode_raw_text(address, hint)
    name, bad_name = _decode_header(name.strip(), hint)
    return Address(_squash(name), address.lower()), bad_address or bad_name


def _addresses(value: str, hint: str | None = None) -> tuple[list[Address], bool]:
    """Parse an address list; returns (addresses, defect)."""
    found, defect = [], False
    words: list[str] = []
    comments: list[str] = []
    angle = None
    for kind, token in itertools.chain(_address_tokens(_unfold(value)), [("special", ",")]):
        if kind == "special" and token == ":" and angle is None:
            words = []  # a group's display name ("unlisted-recipients:") is not a person
        elif kind == "special":
            address, bad = _mailbox(words, angle, comments, hint)
            if address is not None:
                found.append(address)
            defect |= bad
            words, comments, angle = [], [], None
        elif kind == "angle":
            angle = token if angle is None else angle
        elif kind == "comment":
            comments.append(token)
        elif kind == "quoted":
            words.append(re.sub(r"\\(.)", r"\1", token, flags=re.DOTALL))
        else:
            words.append(token)
    return found, defect


def parse_addresses(value: str) -> list[Address]:
    """Parse an address-list header value (raw, encoded words allowed); never raises."""
    try:
        return [Address(clean(a.name), clean(a.email)) for a in _addresses(value or "")[0]]
    except Exception:  # noqa: BLE001 - an address header must never stop an import
        return []


def normalise_subject(subject: str) -> str:
    """Threading key: NFKC, casefold, whitespace collapsed, leading Re:/Fwd:/返信:/転送:/[list tags] stripped."""
    text = " ".join(unicodedata.normalize("NFKC", subject or "").casefold().split())
    position = 0
    while match := _SUBJECT_PREFIXES.match(text, position):
        position = match.end()
    return text[position:]


def _content_type(part: Message) -> str:
    """The part's type, lower-case, without comments or stray whitespace ("text/plain (body)" is text/plain)."""
    return re.sub(r"\([^)]*\)|\s", "", part.get_content_type()) or "text/plain"


def _first(part: Message, name: str) -> str | None:
    """The first raw value of a header, or None."""
    values = part.get_all(name)
    return str(values[0]) if values else None


def _ids(value: str | None) -> list[str]:
    """Message ids in a header, without <> and whitespace; bare tokens with @ when nobody used <>."""
    if not value:
        return []
    value = _unfold(value)
    found = ["".join(_COMMENT.sub("", inner).split()) for inner in _ANGLE_ID.findall(value)]
    if not found:
        found = [token.strip("<>") for token in re.split(r"[\s,]+", value) if "@" in token]
    return [clean(item) for item in found if item]


def _date(value: str | None) -> datetime | None:
    """The Date header as an aware datetime (-0000 counts as UTC), or None."""
    try:
        parsed = parsedate_to_datetime(_unfold(value).strip())
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed


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
        match = _ENCODED_WORD.search(value)
        if match:
            return match.group(1).split("*", 1)[0]
    return None


def _is_auto_submitted(root: Message) -> bool:
    """Auto-Submitted other than no, X-Autoreply, X-Autorespond, or Precedence bulk/junk/auto_reply."""
    def token(name: str) -> str | None:
        value = _first(root, name)
        return None if value is None else (_unfold(value).split(";")[0].split() or [""])[0].lower()

    auto = token("Auto-Submitted")
    if auto and auto != "no":
        return True
    if any(token(name) not in (None, "no") for name in ("X-Autoreply", "X-Autorespond")):
        return True
    return token("Precedence") in ("bulk", "junk", "auto_reply")


def _read_headers(root: Message, result: ParsedMessage, hint: str | None) -> None:
    """Fill the header fields from raw values."""
    raw_id = _first(root, "Message-ID") or ""
    ids = _ids(raw_id)
    result.message_id = ids[0] if ids else clean(re.sub(r"[\s<>]", "", raw_id)) or None
    replied = _ids(_first(root, "In-Reply-To"))
    result.in_reply_to = replied[0] if replied else None
    references = []
    for value in root.get_all("References") or []:
        references.extend(item for item in _ids(value) if item not in references)
    result.references = references
    subject = _first(root, "Subject")
    if subject is not None:
        result.subject, bad = _decode_header(subject, hint)
        result.subject = _squash(result.subject)
        if bad:
            _flag(result, "header_decode")
    for name, attribute in (("From", "from_"), ("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        found = []
        for value in root.get_all(name) or []:
            addresses, bad = _addresses(str(value), hint)
            found.extend(addresses)
            if bad:
                _flag(result, "header_decode")
        setattr(result, attribute, found)
    raw_date = _first(root, "Date")
    result.date = _date(raw_date) if raw_date is not None else None
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
                name, again = _decode_header(name, hint)
                bad |= again
        elif value:
            name, bad = _decode_header(str(value), hint)
        else:
            continue
        name = re.split(r"[\\/]", name)[-1].strip()  # Netscape sent "C:\\TEMP\\x.png"; a name must not be a path
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
        return _word_bytes("b", data.decode("ascii", "replace"))
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

    def __init__(self, result: ParsedMessage, hint: str | None, deadline: float):
        self.result, self.hint, self.deadline = result, hint, deadline
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
            self.attach(part, content_type, filename, disposition, _message_bytes(part, cte))
            return []
        if content_type.startswith("multipart/"):  # a multipart without a usable boundary: its text is all we have
            content_type = "text/plain"
        payload = part.get_payload(decode=True) or b""
        if content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text, bad = decode_text(payload, part.get_content_charset())
            if bad:
                _flag(self.result, "charset_fallback")
            text = text.replace("\r\n", "\n")  # IMAP hands out CRLF; one line ending in storage
            (self.texts if content_type == "text/plain" else self.htmls).append(text)
        elif not (parent_type == "multipart/alternative" and content_type in SKIPPED_ALTERNATIVES):
            self.attach(part, content_type, filename, disposition, payload)
        return []

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
    """Every string through charsets.clean: no NUL, no lone surrogate reaches the database."""
    def people(addresses):
        return [Address(clean(a.name), clean(a.email)) for a in addresses]

    def optional(text):
        return None if text is None else clean(text)

    return ParsedMessage(
        message_id=optional(result.message_id), in_reply_to=optional(result.in_reply_to),
        references=[clean(item) for item in result.references], subject=clean(result.subject),
        from_=people(result.from_), to=people(result.to), cc=people(result.cc), bcc=people(result.bcc),
        date=result.date, text=optional(result.text), html=optional(result.html),
        attachments=[replace(a, filename=clean(a.filename), content_type=clean(a.content_type),
                             content_id=optional(a.content_id)) for a in result.attachments],
        defects=list(result.defects), auto_submitted=result.auto_submitted)


def parse_message(raw: bytes, time_budget: float = 2.0) -> ParsedMessage:
    """Parse one message; never raises: whatever could not be read is listed in `defects`."""
    deadline = time.perf_counter() + time_budget
    result = ParsedMessage()
    try:
        raw, repaired = _repair_header_block(bytes(raw))
        if repaired:
            _flag(result, "structure")
        try:
            root, walk = email.message_from_bytes(raw, policy=_RAW), True
        except Exception:  # noqa: BLE001 - e.g. RecursionError on thousands of nested parts: keep the headers
            root, walk = BytesHeaderParser(policy=_RAW).parsebytes(raw), False
            _flag(result, "structure")
        hint = _charset_hint(root)
        _read_headers(root, result, hint)
        if walk:
            _Walk(result, hint, deadline).run(root)
            _mark_referenced_inline(result)
    except Exception:  # noqa: BLE001 - a message must never stop an import pass; keep what was read
        _flag(result, "structure")
    try:
        return _cleaned(result)
    except Exception:  # noqa: BLE001
        return ParsedMessage(defects=["structure"])
