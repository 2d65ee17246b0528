"""Helpers for tests of raw mail text: ISO-2022-JP bytes as Outlook writes them, and a clean-result check."""
import dataclasses

ESC_KANJI, ESC_ASCII, ESC_KANA = b"\x1b$B", b"\x1b(B", b"\x1b(I"


def jis(text: str) -> bytes:
    """ISO-2022-JP bytes written the way Outlook does (NEC/IBM characters included), via Shift_JIS."""
    out, in_kanji = bytearray(), False
    for char in text:
        if ord(char) < 0x80:
            if in_kanji:
                out += ESC_ASCII
                in_kanji = False
            out += char.encode()
            continue
        high, low = char.encode("cp932")
        high -= 0x70 if high < 0xA0 else 0xB0
        high *= 2
        if low < 0x9F:
            high -= 1
            low -= 0x1F + (1 if low > 0x7F else 0)
        else:
            low -= 0x7E
        if not in_kanji:
            out += ESC_KANJI
            in_kanji = True
        out += bytes((high, low))
    return bytes(out + (ESC_ASCII if in_kanji else b""))


def assert_clean(parsed) -> None:
    """No string anywhere in a parse result (dataclasses, lists, strings) holds a NUL or a lone surrogate."""
    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from strings(item)
        elif dataclasses.is_dataclass(value):
            for item in dataclasses.fields(value):
                yield from strings(getattr(value, item.name))

    for text in strings(parsed):
        assert "\x00" not in text
        text.encode("utf-8")  # raises on a lone surrogate
