"""Integration fixtures: an account with メール on and a customer, and the owner's mailbox linked for real."""
import pytest

from tests.factories import enable_email, make_account, make_customer
from tests.integration.mailbox import CUSTOMER, Mailbox
from tests.integration.oauth_world import oauth_portal  # noqa: F401 (a fixture of the OAuth2 tests)


@pytest.fixture
def account(app):
    """An account with メール on, its owner, and the customer yamada@client.example."""
    account, owner = make_account()
    enable_email(account, owner)
    make_customer(account, name="山田 太郎", email=CUSTOMER)
    return account, owner


@pytest.fixture
def mailbox(account, dovecot, pki, mail_user, smtp_ssl):
    """The owner's mailbox, linked for real."""
    return Mailbox(dovecot, pki, mail_user, account[1], smtp_ssl)
