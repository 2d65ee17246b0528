"""Header and address decoding: RFC 2047 words, raw 8-bit text, address lists, message ids, dates, subjects.

Each function reads one header value the way Japanese mail clients mean it and never raises on odd input;
parse.py walks the MIME tree and calls these for the headers it stores.
"""
import binascii
import itertools
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from portal.mailsync.charsets import clean, decode_text

_NEWLINES = re.compile(r"[\r\n]+")


@dataclass(frozen=True)
class Address:
    """One mailbox: decoded display name and lower-cased address."""

    name: str
    email: str


ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_SURROGATE = re.compile("[\udc80-\udcff]")
_UNLIKELY = re.compile("[\ue000-\uf8ff\ufffd]")
_COMMENT = re.compile(r"\([^()]*\)")
_NOT_IN_ADDRESS = re.compile(r'[<>"]')
_ADDRESS_INSIDE = re.compile(r'[^<>"@]+@[^<>"@]+')
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


def squash(text: str) -> str:
    """Runs of ASCII whitespace (folding leftovers, tabs) as one space; the ideographic space is content and stays."""
    return _ASCII_SPACES.sub(" ", text).strip()


def unfold(value: str) -> str:
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


def word_bytes(encoding: str, text: str) -> bytes:
    """The bytes of one encoded word's text; sloppy base64 padding is repaired, not rejected."""
    data = text.encode("utf-8", "surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    if len(data) % 4 == 1:
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def decode_header(value: str, hint: str | None = None) -> tuple[str, bool]:
    """Decode a raw header value; returns (text, defect)."""
    value = unfold(value)
    tokens: list[tuple[str | None, object]] = []  # (None, literal text) or (charset, encoded-word bytes)
    position, defect = 0, False
    for match in ENCODED_WORD.finditer(value):
        between = value[position:match.start()]
        if between and not (between.isspace() and tokens and tokens[-1][0] is not None):
            tokens.append((None, between))
        try:
            data = word_bytes(match.group(2), match.group(3))
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
        return clean(decode_header(value or "")[0])
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


def _mailbox(words: list[str], angle: str | None, comments: list[str], hint: str | None,
             names: bool = True) -> tuple[Address | None, bool]:
    """One mailbox from its tokens, or None when it holds no address; names=False leaves the name undecoded."""
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
    if not names:
        return Address("", address.lower()), bad_address
    name, bad_name = decode_header(name.strip(), hint)
    return Address(squash(name), address.lower()), bad_address or bad_name


def decode_addresses(value: str, hint: str | None = None, names: bool = True) -> tuple[list[Address], bool]:
    """Parse an address list; returns (addresses, defect). names=False skips decoding display names."""
    found, defect = [], False
    words: list[str] = []
    comments: list[str] = []
    angle = None
    for kind, token in itertools.chain(_address_tokens(unfold(value)), [("special", ",")]):
        if kind == "special" and token == ":" and angle is None:
            words = []  # a group's display name ("unlisted-recipients:") is not a person
        elif kind == "special":
            address, bad = _mailbox(words, angle, comments, hint, names)
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
        return [Address(clean(a.name), clean(a.email)) for a in decode_addresses(value or "")[0]]
    except Exception:  # noqa: BLE001 - an address header must never stop an import
        return []


def parse_emails(value: str) -> list[str]:
    """Only the addresses of an address-list header, exactly as parse_addresses finds them; never raises.

    The import rules run on every fetched message and compare addresses only: decoding each display name
    (ISO-2022-JP and friends) was most of their cost.
    """
    try:
        return [clean(a.email) for a in decode_addresses(value or "", names=False)[0]]
    except Exception:  # noqa: BLE001 - an address header must never stop an import
        return []


def normalise_subject(subject: str) -> str:
    """Threading key: NFKC, casefold, whitespace collapsed, leading Re:/Fwd:/返信:/転送:/[list tags] stripped."""
    text = " ".join(unicodedata.normalize("NFKC", subject or "").casefold().split())
    position = 0
    while match := _SUBJECT_PREFIXES.match(text, position):
        position = match.end()
    return text[position:]


def message_ids(value: str | None) -> list[str]:
    """Message ids in a header, without <> and whitespace; bare tokens with @ when nobody used <>."""
    if not value:
        return []
    value = unfold(value)
    found = ["".join(_COMMENT.sub("", inner).split()) for inner in _ANGLE_ID.findall(value)]
    if not found:
        found = [token.strip("<>") for token in re.split(r"[\s,]+", value) if "@" in token]
    return [clean(item) for item in found if item]


def header_date(value: str | None) -> datetime | None:
    """The Date header as an aware datetime (-0000 counts as UTC), or None."""
    try:
        parsed = parsedate_to_datetime(unfold(value).strip())
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed
