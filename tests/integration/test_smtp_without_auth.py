"""SMTP認証なし: a company relay that takes mail without a login, on presets and links, against a real aiosmtpd."""
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.extensions import db
from portal.forms import SMTP_NO_AUTH_NEEDS_TLS
from portal.mailbox.credentials import secret_box, StoredPasswords
from portal.mailbox.services import connection_policy
from portal.mailsync.connection import SMTP_WITHOUT_AUTH, open_smtp
from portal.models import MailboxLink, MailboxPreset
from tests.integration.mailbox import feedback, form, links


def relay(smtp_server, security="ssl"):
    """A relay that offers no AUTH at all and accepts mail from anyone who connects."""
    return smtp_server(security, offer_auth=False, auth_required=False)


def test_a_server_without_auth_is_named_as_such(portal, dovecot, mail_user, smtp_server):
    """Linking with a login to a relay that has no AUTH: the message says so, beside SMTP認証なし."""
    server = relay(smtp_server)
    app, client = portal(dovecot.imaps_port, server.port)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, server.port))
    assert response.status_code == 422 and links(app) == []
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert SMTP_WITHOUT_AUTH in feedback(page, "smtp_no_auth")
    assert "暗号化" not in feedback(page, "smtp_security")


def test_link_without_smtp_auth_sends_through_the_relay(portal, dovecot, mail_user, smtp_server):
    """With SMTP認証なし the link is made, remembers it, and its SMTP settings send without logging in."""
    server = relay(smtp_server)
    app, client = portal(dovecot.imaps_port, server.port)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, server.port,
                                                          smtp_no_auth="y"))
    assert response.status_code == 302, response.get_data(as_text=True)
    [link] = links(app)
    assert link.smtp_auth is False
    assert "SMTP認証なし" in client.get("/settings/mailbox").get_data(as_text=True)
    with app.app_context():
        link = db.session.get(MailboxLink, link.id)
        settings = StoredPasswords(secret_box(app.config)).smtp_settings(link)
        assert settings.authenticate is False
        smtp = open_smtp(settings, connection_policy(app.config))
        smtp.sendmail(mail_user.email, ["customer@client.example"],
                      b"From: a@example.jp\r\nTo: customer@client.example\r\nSubject: relay\r\n\r\nbody\r\n")
        smtp.quit()
    [received] = server.messages
    assert received.auth_user is None and received.rcpt_tos == ["customer@client.example"]


def test_without_auth_needs_tls_unless_plaintext_is_allowed(portal, dovecot, mail_user, smtp_server):
    """SMTP認証なし over a plaintext connection: refused beside the box unless the operator allows plaintext."""
    server = relay(smtp_server, "none")
    app, client = portal(dovecot.imaps_port, server.port)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, server.port,
                                                          smtp_security="none", smtp_no_auth="y"))
    assert response.status_code == 422 and links(app) == []
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert SMTP_NO_AUTH_NEEDS_TLS in feedback(page, "smtp_no_auth")
    app, client = portal(dovecot.imaps_port, server.port, MAIL_ALLOW_PLAINTEXT=True)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, server.port,
                                                          smtp_security="none", smtp_no_auth="y"))
    assert response.status_code == 302 and links(app)[0].smtp_auth is False


def test_a_preset_without_smtp_auth_is_kept_and_applied(portal, dovecot, mail_user, smtp_server):
    """The preset screen stores SMTP認証なし, shows it again when edited, and a link from it uses it."""
    server = relay(smtp_server)
    app, client = portal(dovecot.imaps_port, server.port)
    client.post("/settings/mailbox-servers/new", data={
        "name": "社内リレー", "auth_method": "password", "imap_host": "127.0.0.1",
        "imap_port": str(dovecot.imaps_port), "imap_security": "ssl", "smtp_host": "127.0.0.1",
        "smtp_port": str(server.port), "smtp_security": "ssl", "smtp_no_auth": "y"})
    with app.app_context():
        [preset] = db.session.scalars(select(MailboxPreset)).all()
        assert preset.smtp_auth is False
        preset_id = preset.id
    edit = BeautifulSoup(client.get(f"/settings/mailbox-servers/{preset_id}/edit").get_data(as_text=True),
                         "html.parser")
    assert edit.find(id="smtp_no_auth").has_attr("checked")
    response = client.post("/settings/mailbox", data=form(mail_user, 1, 1, preset_id=str(preset_id)))
    assert response.status_code == 302, response.get_data(as_text=True)
    assert links(app)[0].smtp_auth is False
