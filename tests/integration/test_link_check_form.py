"""The connection check's form: each error beside its field, what was typed kept except the passwords."""
from bs4 import BeautifulSoup

from tests.integration.mailbox import feedback, form, links
from tests.integration.servers import free_port


def test_wrong_imap_password_sits_beside_the_password_and_the_rest_is_kept(portal, dovecot, mail_user, smtp_ssl):
    """The message is under IMAPパスワード, not above the form; host, port, user stay; no password comes back."""
    app, client = portal(dovecot.imaps_port, smtp_ssl.port)
    data = form(mail_user, dovecot.imaps_port, smtp_ssl.port, imap_password="wrong-password",
                smtp_password="typed-smtp-secret")
    response = client.post("/settings/mailbox", data=data)
    assert response.status_code == 422 and links(app) == []
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert "IMAPサーバーにログインできません" in feedback(page, "imap_password")
    assert not page.select("#link-form ~ .alert-danger") and not page.select(".card-body > .alert-danger")
    for name in ("email", "imap_host", "imap_port", "imap_username", "smtp_host", "smtp_port"):
        assert page.find(id=name)["value"] == data[name], name
    assert page.find(id="imap_security").find("option", selected=True)["value"] == "ssl"
    for name in ("imap_password", "smtp_password"):
        assert not page.find(id=name).get("value"), name
    assert "wrong-password" not in str(page) and "typed-smtp-secret" not in str(page)


def test_network_errors_sit_beside_the_port_or_host_of_their_protocol(portal, dovecot, mail_user, smtp_ssl):
    """Nothing listening on the IMAP port: under IMAPポート; a wrong SMTP password: under SMTPパスワード."""
    closed = free_port()
    app, client = portal(closed, smtp_ssl.port)
    page = BeautifulSoup(client.post("/settings/mailbox", data=form(mail_user, closed, smtp_ssl.port))
                         .get_data(as_text=True), "html.parser")
    assert "IMAPサーバーに接続できません" in feedback(page, "imap_port")
    smtp_ssl.add_user(mail_user.email, "another-password")
    app, client = portal(dovecot.imaps_port, smtp_ssl.port)
    page = BeautifulSoup(client.post("/settings/mailbox", data=form(mail_user, dovecot.imaps_port, smtp_ssl.port))
                         .get_data(as_text=True), "html.parser")
    assert "SMTPサーバーにログインできません" in feedback(page, "smtp_password")


def test_the_check_button_shows_progress_and_is_pressed_once():
    """The form carries the progress text and loads the script that blocks a second press."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "portal"
    template = (root / "templates" / "mailbox" / "form.html").read_text(encoding="utf-8")
    script = (root / "static" / "js" / "check-progress.js").read_text(encoding="utf-8")
    assert 'data-check-progress="接続を確認しています' in template and "check-progress.js" in template
    assert 'form.dataset.checking === "1"' in script and "event.preventDefault()" in script
