"""Japanese mail text decodes as Japanese mail clients meant it."""
import pytest

from portal.mailsync.charsets import (_decode_double, _decode_jis0208_fast, _jis_to_cp932_bytes, clean,
                                     decode_iso2022jp, decode_text)
from tests.mailtext import ESC_ASCII, ESC_KANA, jis


def test_nec_and_ibm_extensions_survive_iso2022jp():
    """①㈱Ⅱ㍉ (which no stock Python codec decodes from ISO-2022-JP) come out right."""
    data = jis("①㈱Ⅱ㍉ テスト")
    with pytest.raises(UnicodeDecodeError):
        data.decode("iso2022_jp")
    assert decode_text(data, "ISO-2022-JP") == ("①㈱Ⅱ㍉ テスト", False)


def test_plain_iso2022jp_and_half_width_katakana():
    """Ordinary JIS text and the JIS X 0201 katakana set both decode."""
    assert decode_iso2022jp("お世話になっております。".encode("iso2022_jp")) == ("お世話になっております。", False)
    assert decode_iso2022jp(ESC_KANA + b"\x31\x32\x33" + ESC_ASCII) == ("ｱｲｳ", False)


@pytest.mark.parametrize("label", ["Shift_JIS", "shift-jis", "Windows-31J", "cp932"])
def test_shift_jis_labels_use_cp932(label):
    """Shift_JIS-labelled mail with NEC characters decodes through CP932."""
    assert decode_text("①㈱ 見積書".encode("cp932"), label) == ("①㈱ 見積書", False)


def test_euc_jp_with_characters_cpython_euc_jp_misses():
    """EUC-JP labelled text decodes via EUC-JIS-2004 (㎝ fails in CPython's euc_jp)."""
    data = "長さ10㎝".encode("euc_jis_2004")
    assert decode_text(data, "EUC-JP") == ("長さ10㎝", False)


def test_mislabelled_euc_jp_declared_as_iso2022jp_is_flagged():
    """8-bit EUC-JP bytes under an ISO-2022-JP label: decoded as Japanese, flagged as a defect."""
    data = "配信できませんでした".encode("euc_jp")
    assert decode_text(data, "iso-2022-jp") == ("配信できませんでした", True)


def test_unknown_charset_falls_back_and_flags():
    """An unknown label (x-unknown) decodes by guessing and says so."""
    assert decode_text("こんにちは".encode("utf-8"), "x-unknown") == ("こんにちは", True)


def test_undecodable_bytes_are_replaced_and_flagged():
    """Garbage still yields text (with replacement marks) and a defect flag, never an exception."""
    text, defect = decode_text(b"\xff\xfe\xfa\x80\x81", "utf-8")
    assert defect and text


def test_nul_and_surrogates_never_reach_the_database():
    """NUL bytes and lone surrogates are removed before storage."""
    assert clean("a\x00b\udce2c") == "ab?c"


def test_every_jis_x0208_pair_decodes_as_the_cp932_route_decodes_it():
    """The fast EUC-JP route and the pair-by-pair cp932 route agree on all 94 x 94 pairs, runs and odd runs."""
    for first in range(0x21, 0x7F):
        row = b"".join(bytes((first, second)) for second in range(0x21, 0x7F))
        expected = _jis_to_cp932_bytes(row).decode("cp932", errors="replace")
        assert _decode_double(row, b"$B")[0] == expected == _decode_double(row, b"$@")[0]
        if _decode_jis0208_fast(row) is not None:
            assert _decode_jis0208_fast(row) == expected
    assert _decode_jis0208_fast(b"\x30\x21\x30\x22") == "亜唖"
    assert _decode_jis0208_fast(b"\x2d\x21") is None  # NEC row 13 (①) goes the cp932 way
    assert _decode_double(b"\x2d\x21\x21\x41", b"$B") == ("①～", False)
    assert _decode_double(b"\x30\x21\x30", b"$B") == ("亜\ufffd", True)
    assert _decode_jis0208_fast(b"\x30\x21 \x30") is None


def test_pairs_decode_one_by_one_the_same_as_in_a_run():
    """Each pair alone (slow route for NEC/IBM rows included) equals its place in the run."""
    for first in range(0x21, 0x7F):
        for second in range(0x21, 0x7F):
            pair = bytes((first, second))
            slow = _jis_to_cp932_bytes(pair).decode("cp932", errors="replace")
            assert _decode_double(pair, b"$B") == (slow, "\ufffd" in slow)
