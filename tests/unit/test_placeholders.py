"""Placeholders in templates: which names are unknown and how known ones are filled."""
import pytest

from portal.mailtemplates.placeholders import PLACEHOLDERS, PlaceholderValues, fill_placeholders, unknown_placeholders

VALUES = PlaceholderValues(customer_name="山田 太郎", company="山田商事", member_name="佐藤 花子")


def test_the_three_placeholders_are_described_in_japanese():
    """The form lists exactly these names with a description each."""
    assert list(PLACEHOLDERS) == ["顧客名", "会社名", "担当者名"]
    assert all(PLACEHOLDERS.values())


def test_fill_replaces_every_known_placeholder():
    """Each placeholder becomes its value, as often as it appears."""
    text = "{{会社名}}\n{{顧客名}}様\n\nいつもお世話になっております。{{担当者名}}です。{{顧客名}}様、よろしくお願いします。"
    assert fill_placeholders(text, VALUES) == ("山田商事\n山田 太郎様\n\nいつもお世話になっております。佐藤 花子です。"
                                               "山田 太郎様、よろしくお願いします。")


@pytest.mark.parametrize("written", ["{{ 顧客名 }}", "{{顧客名 }}", "{{  顧客名}}", "{{\u3000顧客名\u3000}}"])
def test_spaces_inside_the_braces_are_allowed(written):
    """Half- and full-width spaces around the name are fine."""
    assert fill_placeholders(f"{written}様", VALUES) == "山田 太郎様"
    assert unknown_placeholders(written) == []


def test_unknown_names_in_order_and_once_each():
    """Misspelt or invented names are reported once, in the order they first appear."""
    text = "{{foo}} {{顧客}} {{ foo }} {{顧客名}} {{bar}}"
    assert unknown_placeholders(text) == ["foo", "顧客", "bar"]


def test_unknown_placeholders_are_left_as_written():
    """Filling never guesses: an unknown placeholder stays visible."""
    assert fill_placeholders("{{顧客}}様 {{顧客名}}様", VALUES) == "{{顧客}}様 山田 太郎様"


@pytest.mark.parametrize("text", ["{", "}", "価格は {100} 円", "a { b } c", "{顧客名}", "{{顧客名", "顧客名}}",
                                  "{{\n顧客名}}", ""])
def test_lone_braces_are_just_text(text):
    """Single braces, unclosed pairs and braces across lines are ordinary text."""
    assert unknown_placeholders(text) == []
    assert fill_placeholders(text, VALUES) == text


def test_values_are_inserted_literally():
    """A value that looks like a placeholder or a regex escape is not expanded again."""
    tricky = PlaceholderValues(customer_name="{{会社名}}", company=r"\1 \g<0>", member_name="")
    assert fill_placeholders("{{顧客名}}/{{会社名}}/{{担当者名}}", tricky) == r"{{会社名}}/\1 \g<0>/"


def test_subject_values_are_put_on_one_line():
    """fill_subject turns every kind of line break in a value into a space; the template's text is kept."""
    from portal.mailtemplates.placeholders import fill_subject
    values = PlaceholderValues(customer_name="山田\r\n太郎", company="A\u2028B\x85C", member_name="佐藤\v花子")
    assert fill_subject("{{会社名}} {{顧客名}}様（{{担当者名}}）", values) == "A B C 山田 太郎様（佐藤 花子）"
