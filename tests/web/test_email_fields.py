"""Every email field accepts special-use and intranet names (.test, .local, .internal), as the CLI does."""
import pytest

from portal.models import Role

from tests.factories import enable_email, make_account, make_customer, make_link, make_member, make_message

INTRANET = ["staff@corp.test", "staff@office.local", "staff@crm.internal"]
INVALID = "メールアドレスの形式が正しくありません。"


@pytest.fixture
def owner(app):
    """An owner of an account with メール on."""
    account, owner = make_account()
    enable_email(account, owner)
    return owner


def post_email_field(client, owner, field: str, address: str):
    """Submit the form that holds this email field, with the address in it."""
    if field == "member":
        return client.post("/settings/users/new", data={"email": address, "name": "社員", "role": "user"})
    if field == "customer":
        return client.post("/customers/new", data={"name": "顧客", "email": address, "assigned_user_id": ""})
    if field == "mailbox":  # the password is left empty so that no server is contacted
        return client.post("/settings/mailbox", data={"email": address, "imap_host": "imap.example.jp",
                                                      "imap_port": "993", "imap_security": "ssl",
                                                      "imap_username": address, "imap_password": "",
                                                      "smtp_host": "smtp.example.jp", "smtp_port": "587",
                                                      "smtp_security": "starttls"})
    make_link(owner)
    customer = make_customer(owner.account, email="yamada@client.example")
    message = make_message(owner.account, [customer])
    return client.post(f"/mails/{message.id}/reply", data={"to": address, "subject": "", "body": "",
                                                           "action": "send"})


FIELDS = ["member", "customer", "mailbox", "reply"]


@pytest.mark.parametrize("address", INTRANET)
@pytest.mark.parametrize("field", FIELDS)
def test_intranet_addresses_are_accepted(client, auth, owner, field, address):
    """No email field refuses an address only because of its domain."""
    auth.login_member(owner)
    response = post_email_field(client, owner, field, address)
    assert INVALID not in response.get_data(as_text=True)
    if field in ("member", "customer"):
        assert response.status_code == (200 if field == "member" else 302)  # the member form shows the link


@pytest.mark.parametrize("field", FIELDS)
def test_malformed_addresses_are_refused_everywhere(client, auth, owner, field):
    """The one rule still refuses broken addresses, with the same Japanese message."""
    auth.login_member(owner)
    response = post_email_field(client, owner, field, "staff@@corp.test")
    assert response.status_code == 422
    assert INVALID in response.get_data(as_text=True)


def test_a_member_on_a_test_domain_signs_in(client, auth):
    """The login form looks the address up as typed (normalised), whatever the domain."""
    account, _ = make_account()
    member = make_member(account, Role.USER, email="staff@corp.test")
    assert auth.login(" Staff@Corp.TEST ").status_code == 302
    assert member.user.email == "staff@corp.test"
