"""Linking a mailbox through the real screen against a real Dovecot and a real SMTP server on loopback."""
import socket
import threading

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.mailbox.credentials import link_passwords, secret_box
from portal.models import FolderRole, LinkState, MailboxLink, MailboxPreset
from tests.factories import PASSWORD, enable_email, make_account
from tests.integration.mailbox import form, links
from tests.integration.servers import Dovecot, free_port

SAMPLE = b"From: a@example.jp\r\nTo: b@example.jp\r\nSubject: hello\r\n\r\nbody\r\n"


def assert_refused(app, response, message):
    """The form shows the message, status 422, and nothing was saved."""
    page = response.get_data(as_text=True)
    assert response.status_code == 422, page
    assert message in page
    assert links(app) == []


def test_link_over_tls_stores_boundary_and_encrypted_passwords(portal, dovecot, mail_user, smtp_ssl):
    """Success: the link is 連携中, each folder's boundary is the server's UIDNEXT at link time."""
    smtp_ssl.add_user(mail_user.email, mail_user.password)
    dovecot.append(mail_user.email, mail_user.password, "INBOX", SAMPLE)
    dovecot.append(mail_user.email, mail_user.password, "INBOX", SAMPLE)
    dovecot.append(mail_user.email, mail_user.password, "Sent", SAMPLE)
    app, client = portal(dovecot.imaps_port, smtp_ssl.port)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, smtp_ssl.port))
    assert response.status_code == 302
    page = client.get("/settings/mailbox").get_data(as_text=True)
    assert "連携中" in page and mail_user.email in page
    with dovecot.connect(mail_user.email, mail_user.password) as imap:
        server = {name: imap.folder_status(name, [b"UIDVALIDITY", b"UIDNEXT"]) for name in ("INBOX", "Sent")}
    with app.app_context():
        link = db.session.scalar(select(MailboxLink))
        assert link.state == LinkState.ACTIVE
        folders = {folder.role: folder for folder in link.folders}
        assert folders[FolderRole.INBOX].boundary_uidnext == server["INBOX"][b"UIDNEXT"] == 3
        assert folders[FolderRole.INBOX].uidvalidity == server["INBOX"][b"UIDVALIDITY"]
        assert folders[FolderRole.SENT].name == "Sent"
        assert folders[FolderRole.SENT].boundary_uidnext == server["Sent"][b"UIDNEXT"] == 2
        assert mail_user.password not in link.imap_password_encrypted + link.smtp_password_encrypted
        assert link_passwords(link, secret_box(app.config)) == (mail_user.password, mail_user.password)


def test_link_with_starttls_and_non_ascii_password(portal, dovecot, smtp_starttls):
    """STARTTLS on both servers, and a Japanese password (AUTHENTICATE PLAIN in UTF-8) work."""
    user = dovecot.add_user("nihongo@example.jp", "パスワード漢字123")
    smtp_starttls.add_user(user.email, user.password)
    app, client = portal(dovecot.imap_port, smtp_starttls.port)
    response = client.post("/settings/mailbox", data=form(user, dovecot.imap_port, smtp_starttls.port,
                                                          "starttls", "starttls"))
    assert response.status_code == 302, response.get_data(as_text=True)
    assert [link.state for link in links(app)] == [LinkState.ACTIVE]


def test_wrong_imap_password(portal, dovecot, mail_user, smtp_ssl):
    """A rejected IMAP login is named as such."""
    app, client = portal(dovecot.imaps_port, smtp_ssl.port)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, smtp_ssl.port,
                                                          imap_password="wrong-password"))
    assert_refused(app, response, "IMAPサーバーにログインできません。ユーザー名とパスワードを確認してください。")


def test_wrong_smtp_password(portal, dovecot, mail_user, smtp_ssl):
    """IMAP fine but SMTP rejects the login: nothing is saved."""
    smtp_ssl.add_user(mail_user.email, "another-password")
    app, client = portal(dovecot.imaps_port, smtp_ssl.port)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, smtp_ssl.port))
    assert_refused(app, response, "SMTPサーバーにログインできません。")


def test_wrong_port_nothing_listening(portal, dovecot, mail_user, smtp_ssl):
    """A port where no server listens: cannot connect."""
    closed = free_port()
    app, client = portal(closed, smtp_ssl.port)
    response = client.post("/settings/mailbox", data=form(mail_user, closed, smtp_ssl.port))
    assert_refused(app, response, "IMAPサーバーに接続できません。")


def test_server_that_is_down(portal, pki, smtp_ssl):
    """A Dovecot that was running and has stopped: cannot connect."""
    server = Dovecot(pki).start()
    user = server.add_user("down@example.jp", "down-password")
    server.stop()
    app, client = portal(server.imaps_port, smtp_ssl.port)
    response = client.post("/settings/mailbox", data=form(user, server.imaps_port, smtp_ssl.port))
    assert_refused(app, response, "IMAPサーバーに接続できません。")


def test_untrusted_certificate(portal, untrusted_dovecot, smtp_ssl):
    """A self-signed certificate the portal does not trust is refused as a certificate problem."""
    user = untrusted_dovecot.add_user("tls@example.jp", "tls-password")
    app, client = portal(untrusted_dovecot.imaps_port, smtp_ssl.port)
    response = client.post("/settings/mailbox", data=form(user, untrusted_dovecot.imaps_port, smtp_ssl.port))
    assert_refused(app, response, "TLS証明書を確認できません")


def test_tls_on_a_plaintext_port(portal, dovecot, mail_user, smtp_ssl):
    """SSL/TLS chosen for the plaintext port: a TLS failure, explained."""
    app, client = portal(dovecot.imap_port, smtp_ssl.port)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imap_port, smtp_ssl.port))
    assert_refused(app, response, "TLSで通信できません")


def test_imap_not_offered(portal, dovecot, mail_user, smtp_plain):
    """Pointing IMAP at an SMTP server: IMAP is not offered there."""
    app, client = portal(smtp_plain.port, MAIL_ALLOW_PLAINTEXT=True)
    response = client.post("/settings/mailbox", data=form(mail_user, smtp_plain.port, smtp_plain.port,
                                                          "none", "none"))
    assert_refused(app, response, "IMAPが提供されていません")


def test_silent_server_times_out(portal, mail_user, smtp_ssl):
    """A server that accepts but never answers: a timeout, within the configured seconds."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held = []
    accepting = threading.Thread(target=lambda: held.append(listener.accept()), daemon=True)
    accepting.start()
    try:
        app, client = portal(port, smtp_ssl.port)
        response = client.post("/settings/mailbox", data=form(mail_user, port, smtp_ssl.port, "starttls", "ssl"))
        assert_refused(app, response, "応答がありません（タイムアウト）")
    finally:
        listener.close()
        for connection, _ in held:
            connection.close()


def test_plaintext_refused_unless_allowed(portal, dovecot, mail_user, smtp_plain):
    """Security none is a form error by default, before any connection."""
    app, client = portal(dovecot.imap_port, smtp_plain.port)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imap_port, smtp_plain.port,
                                                          "none", "none"))
    assert_refused(app, response, "暗号化なしの接続は許可されていません。")


def test_plaintext_allowed_for_local_test_servers(portal, dovecot, mail_user, smtp_plain):
    """With MAIL_ALLOW_PLAINTEXT the same mailbox links without TLS."""
    smtp_plain.add_user(mail_user.email, mail_user.password)
    app, client = portal(dovecot.imap_port, smtp_plain.port, MAIL_ALLOW_PLAINTEXT=True)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imap_port, smtp_plain.port,
                                                          "none", "none"))
    assert response.status_code == 302


def test_link_from_a_preset(portal, dovecot, mail_user, smtp_ssl):
    """Choosing a preset supplies the server settings, whatever was typed in the server fields."""
    smtp_ssl.add_user(mail_user.email, mail_user.password)
    app, client = portal(dovecot.imaps_port, smtp_ssl.port)
    client.post("/settings/mailbox-servers/new", data={
        "name": "テストサーバー", "imap_host": "127.0.0.1", "imap_port": str(dovecot.imaps_port), "imap_security": "ssl",
        "smtp_host": "127.0.0.1", "smtp_port": str(smtp_ssl.port), "smtp_security": "ssl"})
    page = client.get("/settings/mailbox").get_data(as_text=True)
    assert "テストサーバー" in page
    with app.app_context():
        preset_id = db.session.scalar(select(MailboxPreset.id))
    data = form(mail_user, 1, 1, imap_host="", smtp_host="", preset_id=str(preset_id))
    response = client.post("/settings/mailbox", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert links(app)[0].imap_port == dovecot.imaps_port


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "0x7f.1", "2130706433", "::1", "::ffff:127.0.0.1",
                                  "localhost", "169.254.169.254", "0.0.0.0", "fe80::1"])
def test_loopback_and_link_local_hosts_are_refused_by_default(portal, dovecot, mail_user, smtp_ssl, host):
    """Without MAIL_ALLOWED_NETWORKS the portal's own loopback (and link-local, 0.0.0.0) is never dialled."""
    app, client = portal(dovecot.imaps_port, smtp_ssl.port, MAIL_ALLOWED_NETWORKS="")
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, smtp_ssl.port,
                                                          imap_host=host))
    assert_refused(app, response, "IMAPサーバーのホスト名が、接続できないアドレス")


def test_the_smtp_host_is_checked_too(portal, dovecot, mail_user, smtp_ssl):
    """A good IMAP server does not carry a loopback SMTP host through."""
    smtp_ssl.add_user(mail_user.email, mail_user.password)
    app, client = portal(dovecot.imaps_port, smtp_ssl.port, MAIL_ALLOWED_NETWORKS="127.0.0.1/32")
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, smtp_ssl.port,
                                                          smtp_host="127.0.0.2"))
    assert_refused(app, response, "SMTPサーバーのホスト名が、接続できないアドレス")


def test_tls_checks_the_host_name_not_the_address(portal, dovecot, mail_user, smtp_ssl, monkeypatch):
    """The connection goes to the resolved address, and the certificate is checked against the name typed."""
    smtp_ssl.add_user(mail_user.email, mail_user.password)
    app, client = portal(dovecot.imaps_port, smtp_ssl.port)
    real_lookup = socket.getaddrinfo

    def lookup(host, *args, **kwargs):  # a name the certificate does not carry, on the same server
        return real_lookup("127.0.0.1" if host == "imap.elsewhere.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, smtp_ssl.port,
                                                          imap_host="imap.elsewhere.example"))
    assert_refused(app, response, "IMAPサーバーのTLS証明書を確認できません。")
    response = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, smtp_ssl.port,
                                                          imap_host="localhost", smtp_host="localhost"))
    assert response.status_code == 302, response.get_data(as_text=True)
    assert [(link.imap_host, link.state) for link in links(app)] == [("localhost", LinkState.ACTIVE)]


def test_link_attempts_are_rate_limited_per_member(portal, dovecot, mail_user, smtp_ssl):
    """A member guessing passwords through the portal is stopped with a 429; another member is not."""
    app, client = portal(dovecot.imaps_port, smtp_ssl.port, MAIL_LINK_RATE_LIMIT="3 per hour")
    wrong = form(mail_user, dovecot.imaps_port, smtp_ssl.port, imap_password="guess")
    statuses = [client.post("/settings/mailbox", data=wrong).status_code for _ in range(4)]
    assert statuses == [422, 422, 422, 429]
    page = client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, smtp_ssl.port))
    assert page.status_code == 429 and "しばらく受け付けを止めています" in page.get_data(as_text=True)
    assert links(app) == []
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        email = owner.user.email
    other = app.test_client()
    other.post("/login", data={"email": email, "password": PASSWORD})
    assert other.post("/settings/mailbox", data=wrong).status_code == 422
