"""Decoding Japanese mail text the way Japanese mail clients write it (CP50220 for ISO-2022-JP)."""
import codecs
import re

# Labels whose real-world content is a superset encoding; decode with the superset.
SUPERSETS = {
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "ms_kanji": "cp932",
    "windows-31j": "cp932", "euc-jp": "euc_jis_2004", "x-euc-jp": "euc_jis_2004", "eucjp": "euc_jis_2004",
    "gb2312": "gb18030", "gbk": "gb18030", "ks_c_5601-1987": "cp949", "euc-kr": "cp949",
    "iso-8859-1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252", "latin1": "cp1252",
    "iso-8859-8-i": "iso-8859-8", "x-mac-cyrillic": "mac-cyrillic",
}
ISO_2022_JP_LABELS = {"iso-2022-jp", "iso2022jp", "iso-2022-jp-1", "iso-2022-jp-2", "iso-2022-jp-3",
                      "iso-2022-jp-2004", "iso-2022-jp-ext", "csiso2022jp", "cp50220", "cp50221", "cp50222"}
# Tried when the declared charset fails: UTF-8 and 7-bit ISO-2022-JP first, then the Japanese 8-bit guesses.
GUESSES = ("utf-8", "iso-2022-jp")
JAPANESE_8BIT = ("cp932", "euc_jis_2004")

_ESCAPE = re.compile(rb"\x1b(\(B|\(J|\(I|\$@|\$B|\$\(D|\$\(Q|\$\(O)")


def _jis_to_sjis(first: int, second: int) -> bytes:
    """Map one JIS X 0208 byte pair to its Shift_JIS pair (so cp932 can decode NEC/IBM extensions)."""
    if first % 2:
        low = second + 0x1F + (1 if second >= 0x60 else 0)
    else:
        low = second + 0x7E
    high = (first + 1) // 2 + (0x70 if first < 0x5F else 0xB0)
    return bytes((high, low))


def _jis_to_cp932_bytes(chunk: bytes) -> bytes:
    """A run of JIS X 0208 pairs as Shift_JIS bytes, pair by pair (slow, but cp932 then knows NEC/IBM rows)."""
    return b"".join(_jis_to_sjis(chunk[i], chunk[i + 1]) for i in range(0, len(chunk), 2))


_SET_HIGH_BIT = bytes(byte | 0x80 for byte in range(256))
_JIS_PAIRS = re.compile(rb"(?:[\x21-\x7e][\x21-\x7e])*")
# The six characters where the JIS standard table (Python's euc_jp) and Microsoft's cp932 disagree; Japanese
# mailers mean cp932's. A test compares every one of the 94 x 94 pairs with the cp932 route.
_TO_CP932 = str.maketrans({"\u301c": "\uff5e", "\u2016": "\u2225", "\u2212": "\uff0d", "\u00a2": "\uffe0",
                           "\u00a3": "\uffe1", "\u00ac": "\uffe2"})


def _decode_jis0208_fast(chunk: bytes) -> str | None:
    """JIS X 0208 pairs decoded in C (as EUC-JP), or None for NEC/IBM rows and broken runs (the cp932 route).

    Pair-by-pair conversion in Python was the biggest cost of reading ISO-2022-JP headers and bodies.
    """
    if not _JIS_PAIRS.fullmatch(chunk):
        return None
    try:
        return chunk.translate(_SET_HIGH_BIT).decode("euc_jp").translate(_TO_CP932)
    except UnicodeDecodeError:
        return None


def _decode_double(chunk: bytes, mode: bytes) -> tuple[str, bool]:
    """Decode a run of two-byte JIS characters; returns (text, had_errors)."""
    if len(chunk) % 2:
        chunk, tail_bad = chunk[:-1], True
    else:
        tail_bad = False
    if mode in (b"$@", b"$B"):
        fast = _decode_jis0208_fast(chunk)
        if fast is not None:
            return fast + ("\ufffd" if tail_bad else ""), tail_bad
        raw = _jis_to_cp932_bytes(chunk)
        codec = "cp932"
    elif mode == b"$(D":  # JIS X 0212 lives behind 0x8F in EUC-JP
        raw = b"".join(b"\x8f" + bytes((chunk[i] | 0x80, chunk[i + 1] | 0x80)) for i in range(0, len(chunk), 2))
        codec = "euc_jp"
    else:  # JIS X 0213 plane 1
        raw = bytes(byte | 0x80 for byte in chunk)
        codec = "euc_jis_2004"
    text = raw.decode(codec, errors="replace")
    return text + ("\ufffd" if tail_bad else ""), tail_bad or "\ufffd" in text


def decode_iso2022jp(data: bytes) -> tuple[str, bool]:
    """Decode ISO-2022-JP including NEC/IBM extensions (①, ㈱, Ⅱ); returns (text, had_errors)."""
    parts, errors, mode, position = [], False, b"(B", 0
    for match in _ESCAPE.finditer(data):
        segment = data[position:match.start()]
        text, bad = _decode_segment(segment, mode)
        parts.append(text)
        errors |= bad
        mode, position = match.group(1), match.end()
    text, bad = _decode_segment(data[position:], mode)
    parts.append(text)
    return "".join(parts), errors or bad


def _decode_segment(segment: bytes, mode: bytes) -> tuple[str, bool]:
    """Decode the bytes between two escape sequences in the given mode."""
    if not segment:
        return "", False
    if mode in (b"(B", b"(J"):
        text = segment.decode("ascii", errors="replace")
        return text, "\ufffd" in text or not segment.isascii()
    if mode == b"(I":  # half-width katakana: JIS X 0201 bytes 0x21-0x5F are cp932 0xA1-0xDF
        text = bytes(byte | 0x80 for byte in segment).decode("cp932", errors="replace")
        return text, "\ufffd" in text
    lines = re.split(rb"(\r?\n)", segment)  # a line break always returns to ASCII in practice
    parts, errors = [], False
    for piece in lines:
        if piece in (b"\n", b"\r\n"):
            parts.append(piece.decode())
        elif piece:
            text, bad = _decode_double(piece, mode)
            parts.append(text)
            errors |= bad
    return "".join(parts), errors


def _codec_name(label: str | None) -> str | None:
    """The Python codec for a charset label, or None when unknown."""
    if not label:
        return None
    label = label.strip().strip('"').lower()
    if label in ISO_2022_JP_LABELS:
        return "iso-2022-jp"
    label = SUPERSETS.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _strict(data: bytes, codec: str) -> str | None:
    """Decode strictly, or None when the bytes do not fit the codec."""
    if codec in ("iso-2022-jp", "iso2022_jp"):
        if not data.isascii():
            return None
        text, bad = decode_iso2022jp(data)
        return None if bad else text
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def clean(text: str) -> str:
    """Remove what a database must never store: NUL bytes and lone surrogates."""
    text = text.replace("\x00", "")
    return text.encode("utf-8", errors="replace").decode("utf-8") if _has_surrogates(text) else text


# Controls (C0, DEL, C1) and the Unicode line and paragraph separators: none belongs in a file name or a header.
_FILENAME_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_FILENAME_LENGTH = 255


def safe_filename(name: str | None) -> str:
    """A file name fit for storage and a Content-Disposition header: no control character (a CR/LF from
    `filename*=UTF-8''a%0D%0Ab` would break the download's headers), no path, at most 255 characters; may be ""."""
    text = _FILENAME_CONTROLS.sub(" ", clean(name or ""))
    text = re.split(r"[\\/]", text)[-1]  # Netscape sent "C:\\TEMP\\x.png"; a name must not be a path
    text = " ".join(text.split())
    if len(text) > MAX_FILENAME_LENGTH:
        stem, dot, extension = text.rpartition(".")
        keep = extension if dot and stem and len(extension) <= 16 else ""
        text = text[:MAX_FILENAME_LENGTH - len(keep) - (1 if keep else 0)].rstrip() + (f".{keep}" if keep else "")
    return text


def _has_surrogates(text: str) -> bool:
    """True when the text holds unpaired surrogate code points."""
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _japanese_score(text: str) -> int:
    """How Japanese a decoding looks: kana and kanji count, half-width katakana (a typical misdecode) do not."""
    score = 0
    for char in text:
        code = ord(char)
        if 0x3040 <= code <= 0x30FF or 0x4E00 <= code <= 0x9FFF or 0x3000 <= code <= 0x303F:
            score += 2
        elif 0xFF61 <= code <= 0xFF9F:
            score -= 1
    return score


def decode_text(data: bytes, declared: str | None) -> tuple[str, bool]:
    """Decode body or header bytes: declared charset (via its superset), then guesses; returns (text, defect)."""
    codec = _codec_name(declared)
    if codec:
        text = _strict(data, codec)
        if text is not None:
            return clean(text), False
    for candidate in GUESSES:
        text = _strict(data, candidate)
        if text is not None:
            return clean(text), declared is not None
    guesses = [text for text in (_strict(data, c) for c in JAPANESE_8BIT) if text is not None]
    if guesses:
        return clean(max(guesses, key=_japanese_score)), True
    return clean(data.decode(codec or "utf-8", errors="replace")), True
