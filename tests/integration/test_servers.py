"""Self-tests of the real mail-server fixtures (Dovecot over IMAP, aiosmtpd over SMTP)."""
import datetime
import email.policy
import secrets
import smtplib
import ssl
from email.message import EmailMessage

import imapclient
import pytest
from imapclient.exceptions import LoginError

from tests.integration import servers

JAPANESE_FOLDER = "送信済みメール"


def make_message(subject="テスト", sender="from@example.jp", to="to@example.jp", policy=email.policy.SMTP) -> bytes:
    """A small UTF-8 message as raw bytes (CRLF line ends unless another policy is given)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content("本文です。\n")
    return message.as_bytes(policy=policy)


def test_imap_tls_login_trusting_the_ca_lists_special_use_folders(dovecot, pki, mail_user):
    """Implicit TLS verified against the test CA; LIST shows the special-use folders."""
    with imapclient.IMAPClient("127.0.0.1", dovecot.imaps_port, ssl_context=ssl.create_default_context(
            cafile=str(pki.ca_file))) as client:
        client.login(mail_user.email, mail_user.password)
        folders = {name: flags for flags, _, name in client.list_folders()}
    assert b"\\Sent" in folders["Sent"]
    assert {"INBOX", "Drafts", "Trash", "Junk"} <= folders.keys()


def test_imap_plain_port_with_starttls(dovecot, mail_user):
    """The plaintext port upgrades with STARTTLS and then logs in."""
    with imapclient.IMAPClient("127.0.0.1", dovecot.imap_port, ssl=False) as client:
        client.starttls(dovecot.ssl_context())
        client.login(mail_user.email, mail_user.password)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_imap_wrong_password_is_rejected(dovecot, mail_user):
    """A wrong password is refused with LoginError."""
    with pytest.raises(LoginError):
        dovecot.connect(mail_user.email, mail_user.password + "x")


def test_user_added_while_running_can_log_in(dovecot, mail_user):
    """A user added after start can log in at once."""
    dovecot.connect(mail_user.email, mail_user.password).logout()
    late = dovecot.add_user(f"late{secrets.token_hex(4)}@example.jp", "late-pass")
    dovecot.connect(late.email, late.password).logout()


def test_non_ascii_password(dovecot):
    """A UTF-8 password works (connect() uses AUTHENTICATE PLAIN for it)."""
    user = dovecot.add_user(f"jp{secrets.token_hex(4)}@example.jp", "パスワード-2026")
    dovecot.connect(user.email, user.password).logout()


def test_password_changed_while_running_takes_effect(dovecot, mail_user):
    """After a password change the old one fails and the new one works."""
    dovecot.connect(mail_user.email, mail_user.password).logout()
    dovecot.add_user(mail_user.email, "changed-pass")
    with pytest.raises(LoginError):
        dovecot.connect(mail_user.email, mail_user.password)
    dovecot.connect(mail_user.email, "changed-pass").logout()


def test_untrusted_certificate_fails_verification_with_the_ca(untrusted_dovecot, pki):
    """The untrusted server's certificate does not verify against the test CA."""
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        imapclient.IMAPClient("127.0.0.1", untrusted_dovecot.imaps_port, ssl_context=context, timeout=5)


def test_untrusted_dovecot_works_when_its_certificate_is_trusted(untrusted_dovecot):
    """Trusting the self-signed certificate itself lets a client in."""
    user = untrusted_dovecot.add_user("someone@example.jp", "pw-1")
    untrusted_dovecot.connect(user.email, user.password).logout()


def test_failed_start_raises_with_the_log_and_cleans_up(pki, monkeypatch):
    """A broken config fails start() with Dovecot's own error and leaves nothing behind."""
    for name in ("DOVECOT_2_3_CONF", "DOVECOT_2_4_CONF"):
        monkeypatch.setattr(servers, name, getattr(servers, name) + "no_such_setting = 1\n")
    server = servers.Dovecot(pki)
    with pytest.raises(RuntimeError, match="no_such_setting"):
        server.start()
    assert server.root is None and not servers._pids_titled(f"{server.instance_name}/")


def test_appended_message_is_fetched_back(dovecot, mail_user):
    """APPEND with flags and date; BODY.PEEK[] returns the bytes (with CRLF line ends)."""
    raw = make_message(policy=email.policy.default)  # bare LF line ends
    when = datetime.datetime(2024, 4, 1, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=9)))
    uid = dovecot.append(mail_user.email, mail_user.password, "INBOX", raw, flags=[b"\\Seen"], msg_time=when)
    with dovecot.connect(mail_user.email, mail_user.password) as client:
        client.select_folder("INBOX", readonly=True)
        fetched = client.fetch([uid], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])[uid]
    # Dovecot hands messages back with CRLF line ends even when appended with bare LF.
    assert fetched[b"BODY[]"] == raw.replace(b"\n", b"\r\n")
    assert b"\\Seen" in fetched[b"FLAGS"]
    assert fetched[b"INTERNALDATE"].replace(tzinfo=None) == when.astimezone().replace(tzinfo=None)


def test_japanese_and_dotted_folders_can_be_created_and_deleted(dovecot, mail_user):
    """Japanese and dotted folder names can be created, used and deleted."""
    for name in (JAPANESE_FOLDER, "Projects.2024"):
        dovecot.create_folder(mail_user.email, mail_user.password, name)
    dovecot.append(mail_user.email, mail_user.password, JAPANESE_FOLDER, make_message())
    with dovecot.connect(mail_user.email, mail_user.password) as client:
        names = [name for _, _, name in client.list_folders()]
        assert client.folder_status(JAPANESE_FOLDER, [b"MESSAGES"])[b"MESSAGES"] == 1
    assert JAPANESE_FOLDER in names and "Projects.2024" in names
    dovecot.delete_folder(mail_user.email, mail_user.password, "Projects.2024")
    with dovecot.connect(mail_user.email, mail_user.password) as client:
        assert not client.folder_exists("Projects.2024")


def test_smtp_ssl_login_and_send_is_recorded(smtp_ssl):
    """SMTPS: AUTH and sendmail; envelope, raw bytes and login are recorded."""
    smtp_ssl.add_user("sender@example.jp", "smtp-pass")
    raw = make_message(sender="sender@example.jp")
    with smtplib.SMTP_SSL("127.0.0.1", smtp_ssl.port, context=smtp_ssl.ssl_context(), timeout=10) as client:
        client.login("sender@example.jp", "smtp-pass")
        client.sendmail("sender@example.jp", ["to@example.jp", "cc@example.jp"], raw)
    [received] = smtp_ssl.messages
    assert (received.mail_from, received.rcpt_tos, received.auth_user) == (
        "sender@example.jp", ["to@example.jp", "cc@example.jp"], "sender@example.jp")
    assert received.data == raw


def test_smtp_starttls_offers_auth_only_after_tls_and_records(smtp_starttls):
    """STARTTLS: AUTH is offered only after the upgrade; the message is recorded."""
    smtp_starttls.add_user("sender@example.jp", "smtp-pass")
    with smtplib.SMTP("127.0.0.1", smtp_starttls.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls") and not client.has_extn("auth")
        client.starttls(context=smtp_starttls.ssl_context())
        client.login("sender@example.jp", "smtp-pass")
        client.sendmail("sender@example.jp", ["to@example.jp"], make_message())
    assert [m.rcpt_tos for m in smtp_starttls.messages] == [["to@example.jp"]]


def test_smtp_plain_allows_auth_without_tls(smtp_plain):
    """security='none': AUTH works in plaintext."""
    smtp_plain.add_user("sender@example.jp", "smtp-pass")
    with smtplib.SMTP("127.0.0.1", smtp_plain.port, timeout=10) as client:
        client.login("sender@example.jp", "smtp-pass")
        client.sendmail("sender@example.jp", ["to@example.jp"], make_message())
    assert len(smtp_plain.messages) == 1


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_smtp_wrong_password_is_rejected(smtp_server, security):
    """A wrong SMTP password raises SMTPAuthenticationError."""
    server = smtp_server(security, users={"sender@example.jp": "smtp-pass"})
    with smtp_client(server) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("sender@example.jp", "wrong")


def test_smtp_mail_without_auth_is_refused(smtp_ssl):
    """MAIL FROM before AUTH gets 530 and nothing is recorded."""
    with smtp_client(smtp_ssl) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("sender@example.jp", ["to@example.jp"], make_message())
    assert refused.value.smtp_code == 530
    assert smtp_ssl.messages == []


def test_smtp_untrusted_certificate_fails_verification_with_the_ca(smtp_server, pki):
    """An SMTPS server with the untrusted certificate fails verification."""
    server = smtp_server("ssl", use_untrusted_cert=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL("127.0.0.1", server.port, context=ssl.create_default_context(cafile=str(pki.ca_file)),
                         timeout=10)


def smtp_client(server) -> smtplib.SMTP:
    """A connected smtplib client, over TLS (implicit or STARTTLS) trusting the server's CA."""
    if server.security == "ssl":
        return smtplib.SMTP_SSL("127.0.0.1", server.port, context=server.ssl_context(), timeout=10)
    client = smtplib.SMTP("127.0.0.1", server.port, timeout=10)
    if server.security == "starttls":
        client.starttls(context=server.ssl_context())
    return client
