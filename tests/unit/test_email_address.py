"""One address rule for forms and CLI: any syntactically valid address, special-use and intranet names too."""
import pytest

from portal.email_address import is_valid_email

ACCEPTED = ["taro@example.jp", "newhire@corp.test", "staff@printer.local", "sales@crm.internal",
            "a.b+tag@mail.example.co.jp", "x@localhost.localdomain", "user@例え.jp", "o'brien@sub-domain.example",
            "user@xn--r8jz45g.jp", "admin@mail.corp.lan"]
REFUSED = ["", "plain", "@example.jp", "user@", "user@@example.jp", "a@b@example.jp", "user@localhost",
           "user@gmailcom", "user@10.0.0.1", "user@[10.0.0.1]", "user@-bad.example", "user@bad-.example",
           "user@exa mple.jp", "us er@example.jp", "user.@example.jp", ".user@example.jp", "a..b@example.jp",
           "user@example..jp", "user@example.jp.", '"quoted"@example.jp', "山田 <yamada@example.jp>",
           "user\x00@example.jp", "user@exam\x00ple.jp", "user\r\n@example.jp", "user@under_score.example",
           "a" * 65 + "@example.jp", "u@" + "a" * 64 + ".jp", "u@" + ".".join(["abcdefghi"] * 26) + ".jp"]


@pytest.mark.parametrize("address", ACCEPTED)
def test_valid_addresses_are_accepted(address):
    """Special-use (.test, .local) and intranet (.internal, .lan) names pass, as do IDN and plus addresses."""
    assert is_valid_email(address)


@pytest.mark.parametrize("address", REFUSED, ids=repr)
def test_malformed_addresses_are_refused(address):
    """Broken syntax, a single-label host, IP addresses, quotes, display names and control characters fail."""
    assert not is_valid_email(address)
