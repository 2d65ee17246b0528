"""Connection rules and Sent-folder detection, without a network (one loopback fake SMTP server)."""
import socket
import ssl

import pytest

from portal.mailsync.connection import (TOKEN_REFUSED_CODES, ConnectionPolicy, MailboxError, ServerSettings,
                                        check_policy, network_error, open_smtp)
from portal.mailsync.network import parse_networks
from portal.mailsync.verify import find_sent_folder
from portal.models import Security
from tests.factories import LOOPBACK_NETWORKS
from tests.fakes import FakeSmtpServer


def settings(port=993, security=Security.SSL):
    """IMAP settings on the given port."""
    return ServerSettings("mail.example.jp", port, security, "u", "p")


def test_plaintext_refused_by_default_and_allowed_when_configured():
    """TLS only unless the operator allows plaintext."""
    with pytest.raises(MailboxError) as refused:
        check_policy("IMAP", settings(143, Security.NONE), ConnectionPolicy())
    assert refused.value.code == "plaintext_refused" and "暗号化なし" in refused.value.message
    check_policy("IMAP", settings(143, Security.NONE), ConnectionPolicy(allow_plaintext=True))


@pytest.mark.parametrize("port,extra,allowed", [(993, (), True), (587, (), True), (25, (), True),
                                                (8080, (), False), (10143, (10143,), True), (22, (10143,), False)])
def test_only_mail_ports(port, extra, allowed):
    """993/143/465/587/25 plus MAIL_EXTRA_PORTS; anything else is refused before connecting."""
    policy = ConnectionPolicy(extra_ports=extra)
    if allowed:
        check_policy("IMAP", settings(port), policy)
    else:
        with pytest.raises(MailboxError) as refused:
            check_policy("IMAP", settings(port), policy)
        assert refused.value.code == "port_refused" and str(port) in refused.value.message


def folder(name, *flags, delimiter=b"/"):
    """A LIST entry as imapclient returns it."""
    return (tuple(flags), delimiter, name)


def test_special_use_wins_over_names():
    """A folder flagged \\Sent is the Sent folder even when another is called Sent."""
    folders = [folder("INBOX"), folder("Sent"), folder("送信済み (会社)", b"\\Sent")]
    assert find_sent_folder(folders) == "送信済み (会社)"


@pytest.mark.parametrize("names,expected", [
    (["INBOX", "送信済みメール", "Trash"], "送信済みメール"),
    (["INBOX", "送信済みアイテム"], "送信済みアイテム"),
    (["INBOX", "Sent Items"], "Sent Items"),
    (["INBOX", "sent messages"], "sent messages"),
    (["INBOX", "INBOX.Sent"], "INBOX.Sent"),
    (["INBOX", "Drafts", "Archive"], None),
])
def test_sent_by_common_names(names, expected):
    """Without SPECIAL-USE, common English and Japanese names are recognised."""
    assert find_sent_folder([folder(name, delimiter=b".") for name in names]) == expected


@pytest.mark.parametrize("error,code,words", [
    (socket.gaierror(-2, "Name or service not known"), "host_not_found", "サーバーが見つかりません"),
    (ConnectionRefusedError(111, "refused"), "connect_failed", "接続できません"),
    (socket.timeout("timed out"), "timeout", "タイムアウト"),
    (ssl.SSLCertVerificationError("self signed"), "tls_certificate", "TLS証明書"),
])
def test_network_failures_become_japanese_messages(error, code, words):
    """Each kind of failure names its cause (DNS is not reachable from tests, so host-not-found is checked here)."""
    translated = network_error("IMAP", error)
    assert translated.code == code and words in translated.message and translated.message.startswith("IMAP")


@pytest.mark.parametrize("xoauth2", [False, True])
def test_smtp_454_is_temporary_not_a_refused_login(xoauth2):
    """454 4.7.0 to AUTH means the server cannot check credentials now: a temporary failure in Japanese, not
    「ユーザー名とパスワードを確認」 and not a refused token (which would spend a refresh and ask for sign-in)."""
    with FakeSmtpServer("454 4.7.0 Temporary authentication failure") as server:
        smtp = ServerSettings("127.0.0.1", server.port, Security.NONE, "u@example.jp", "secret-or-token",
                              xoauth2=xoauth2)
        policy = ConnectionPolicy(allow_plaintext=True, extra_ports=(server.port,),
                                  allowed_networks=parse_networks(LOOPBACK_NETWORKS))
        with pytest.raises(MailboxError) as refused:
            open_smtp(smtp, policy)
    assert refused.value.code == "smtp_unavailable" and refused.value.code not in TOKEN_REFUSED_CODES
    assert "一時的" in refused.value.message and server.auths >= 1
