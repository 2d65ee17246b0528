"""How a keyword is split into words, and which words the trigram index can find."""
from portal.mails.search import MAX_WORDS, split_words


def test_words_of_three_letters_or_digits_go_to_the_index_shorter_ones_do_not():
    """Three letters or digits in a row are indexable; symbols do not count (pg_trgm drops them)."""
    words = split_words("見積書 見積 堀 INV-2026 A-1 100% ***")
    assert words.indexed == ("見積書", "INV-2026", "100%")
    assert words.short == ("見積", "堀", "A-1", "***")
    assert not words.windowed


def test_only_short_words_make_a_windowed_search():
    """Without an indexable word the search can only read the newest messages."""
    assert split_words("見積 堀").windowed
    assert not split_words("見積書").windowed
    assert not split_words("").windowed and split_words("   ").indexed == ()


def test_any_whitespace_splits_and_repeats_and_excess_words_are_dropped():
    """The full-width space splits like a normal one; a word counts once; at most MAX_WORDS words."""
    assert split_words("山田様\u3000見積書\t山田様").indexed == ("山田様", "見積書")
    many = " ".join(f"語{n:03d}" for n in range(MAX_WORDS + 5))
    assert len(split_words(many).indexed) == MAX_WORDS
