"""One rule for what an email address looks like, used by every web form and by the operator CLI."""
import re

import idna
from email_validator import EmailNotValidError, validate_email

INVALID_EMAIL = "メールアドレスの形式が正しくありません。"
MAX_EMAIL_LENGTH = 254

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _valid_local_part(local: str) -> bool:
    """The part before the @ as email-validator reads it (dot-atom, no quotes, no display name, 64 octets)."""
    if len(local.encode("utf-8")) > 64:
        return False
    try:
        # The stand-in domain lets email-validator judge the local part alone; the domain has its own rule below.
        validate_email(f"{local}@example.com", check_deliverability=False, allow_quoted_local=False,
                       allow_display_name=False, allow_domain_literal=False)
    except EmailNotValidError:
        return False
    return True


def _valid_domain(domain: str) -> bool:
    """A host name with at least one dot: intranet and special-use names (.test, .local, .internal) included."""
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    labels = ascii_domain.split(".")
    # A single label (`localhost`, `gmailcom`) is nearly always a typo; an all-digit last label is an IP address.
    return (len(ascii_domain) <= 253 and len(labels) >= 2 and all(_LABEL.match(label) for label in labels)
            and not labels[-1].isdigit())


def is_valid_email(address: str) -> bool:
    """True for a syntactically valid address; no DNS lookup and no list of refused domains."""
    if not isinstance(address, str) or len(address) > MAX_EMAIL_LENGTH or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    return bool(local) and bool(domain) and _valid_local_part(local) and _valid_domain(domain)
