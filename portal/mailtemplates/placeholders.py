"""Placeholders such as {{顧客名}} in a template's subject and body: finding unknown ones and filling them."""
import re
from dataclasses import dataclass

PLACEHOLDERS: dict[str, str] = {
    "顧客名": "お客様のお名前",
    "会社名": "お客様の会社名",
    "担当者名": "送信するユーザーの名前",
}

# Spaces (half- or full-width) may pad the name. Braces stay on one line so that a stray "{{" does not
# swallow the text up to a "}}" several lines further down.
_PATTERN = re.compile(r"\{\{[ \t\u3000]*([^{}\n]*?)[ \t\u3000]*\}\}")
# Line breaks of every kind (what str.splitlines splits on) and other control characters.
_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


@dataclass(frozen=True)
class PlaceholderValues:
    """What each placeholder becomes in one sent mail."""

    customer_name: str
    company: str
    member_name: str


def unknown_placeholders(text: str) -> list[str]:
    """Names used in the text that are not placeholders, in order of appearance, each once."""
    unknown = [name for name in _PATTERN.findall(text or "") if name not in PLACEHOLDERS]
    return list(dict.fromkeys(unknown))


def fill_placeholders(text: str, values: PlaceholderValues) -> str:
    """The text with every known placeholder replaced; anything else is left as written."""
    by_name = {"顧客名": values.customer_name, "会社名": values.company, "担当者名": values.member_name}
    return _PATTERN.sub(lambda match: by_name.get(match.group(1), match.group(0)), text or "")


def one_line(value: str) -> str:
    """The value with line breaks and control characters turned into one space each run."""
    return _BREAKS.sub(" ", value or "").strip()


def fill_subject(text: str, values: PlaceholderValues) -> str:
    """Fill a subject: a value never carries a line break (or another control character) into the header."""
    return fill_placeholders(text, PlaceholderValues(customer_name=one_line(values.customer_name),
                                                     company=one_line(values.company),
                                                     member_name=one_line(values.member_name)))

