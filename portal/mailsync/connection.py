"""Opening verified IMAP and SMTP connections, with every failure turned into a Japanese message."""
import base64
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from functools import cached_property

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from portal.mailsync import network
from portal.models.mailbox import Security

STANDARD_MAIL_PORTS = (993, 143, 465, 587, 25)

# RFC 5530 codes of a refused login that blame the server, not the credentials (Dovecot answers [UNAVAILABLE]
# while its password backend is down): retried with backoff. [AUTHENTICATIONFAILED], [EXPIRED], other codes
# and a bare NO mean the member must enter the credentials again.
TEMPORARY_LOGIN_CODES = frozenset({"UNAVAILABLE", "SERVERBUG", "LIMIT", "INUSE"})


@dataclass(frozen=True)
class ServerSettings:
    """Where and as whom to connect."""

    host: str
    port: int
    security: Security
    username: str
    password: str = field(repr=False)  # the access token when xoauth2 is set
    xoauth2: bool = False
    authenticate: bool = True  # False: SMTP認証なし, a relay that takes mail without a login


@dataclass(frozen=True)
class ConnectionPolicy:
    """The operator's rules: TLS only unless plaintext is allowed, mail ports only, no guarded networks unless
    opened (MAIL_ALLOWED_NETWORKS), a CA to trust, timeouts."""

    allow_plaintext: bool = False
    ca_file: str | None = None
    extra_ports: tuple[int, ...] = ()
    timeout: float = 15.0
    allowed_networks: tuple = ()

    @property
    def allowed_ports(self) -> set[int]:
        """Ports a mailbox may use."""
        return set(STANDARD_MAIL_PORTS) | set(self.extra_ports)

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying TLS context that also trusts the configured company CA."""
        return self._tls_context

    @cached_property
    def _tls_context(self) -> ssl.SSLContext:
        """Built once per policy: loading the CA bundle was half the cost of an idle sync."""
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        return context


class MailboxError(Exception):
    """A mailbox problem with a code for the program and a Japanese message for the member."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def network_error(protocol: str, error: BaseException) -> MailboxError:
    """Translate a socket/TLS failure into the member's words."""
    if isinstance(error, socket.gaierror):
        return MailboxError("host_not_found", f"{protocol}サーバーが見つかりません。ホスト名を確認してください。")
    if isinstance(error, (socket.timeout, TimeoutError)):
        return MailboxError("timeout", f"{protocol}サーバーから応答がありません（タイムアウト）。"
                                       "ホスト名とポート番号を確認してください。")
    if isinstance(error, ssl.SSLCertVerificationError):
        return MailboxError("tls_certificate", f"{protocol}サーバーのTLS証明書を確認できません。"
                                               "証明書が信頼できないか、ホスト名と一致しません。")
    if isinstance(error, ssl.SSLError):
        return MailboxError("tls_failed", f"{protocol}サーバーとTLSで通信できません。"
                                          "暗号化（SSL/TLS・STARTTLS）とポート番号の組み合わせを確認してください。")
    return MailboxError("connect_failed", f"{protocol}サーバーに接続できません。"
                                          "ホスト名・ポート番号を確認し、サーバーが起動しているか確かめてください。")


def address_refused(protocol: str) -> MailboxError:
    """The host name points at loopback, link-local or the like; said before any connection, whatever the port."""
    return MailboxError("address_refused", f"{protocol}サーバーのホスト名が、接続できないアドレス（このサーバー自身・"
                                           "リンクローカルなど）を指しています。メールサーバーのホスト名を確認してください。")


def checked_addresses(protocol: str, settings: ServerSettings, policy: ConnectionPolicy) -> list[tuple]:
    """Resolve the host once and keep the addresses the operator's networks allow (MailboxError otherwise)."""
    try:
        return network.resolve(settings.host, settings.port, policy.allowed_networks)
    except network.AddressRefused as error:
        raise address_refused(protocol) from error
    except (OSError, UnicodeError) as error:  # gaierror, or a name IDNA cannot encode
        raise network_error(protocol, error if isinstance(error, OSError) else socket.gaierror()) from error


def server_error(error: BaseException) -> MailboxError:
    """Translate a failure in the middle of a pass (a dropped or broken IMAP session) into the member's words."""
    if isinstance(error, TimeoutError) or "timed out" in str(error):
        return MailboxError("server_error", "メールサーバーからの応答が途中で途切れました（タイムアウト）。自動的に再試行します。")
    return MailboxError("server_error", "メールサーバーとの通信中にエラーが発生しました。自動的に再試行します。")


def check_policy(protocol: str, settings: ServerSettings, policy: ConnectionPolicy) -> None:
    """Refuse plaintext and non-mail ports before any connection is made."""
    if settings.security == Security.NONE and not policy.allow_plaintext:
        raise MailboxError("plaintext_refused", f"{protocol}は暗号化なしでは接続できません。"
                                                "SSL/TLS または STARTTLS を選んでください。")
    if settings.port not in policy.allowed_ports:
        raise MailboxError("port_refused", f"{protocol}のポート番号 {settings.port} は使用できません。")


def open_imap(settings: ServerSettings, policy: ConnectionPolicy) -> IMAPClient:
    """Connect and log in to IMAP; raises MailboxError with the member's message."""
    check_policy("IMAP", settings, policy)
    addresses = checked_addresses("IMAP", settings, policy)
    try:
        client = network.PinnedIMAPClient(settings.host, addresses, port=settings.port,
                                          ssl=settings.security == Security.SSL, ssl_context=policy.ssl_context(),
                                          timeout=policy.timeout)
    except IMAPClient.Error as error:
        raise MailboxError("not_imap", "このサーバー・ポートではIMAPが提供されていません。ポート番号を確認してください。") from error
    except (OSError, ssl.SSLError) as error:
        raise network_error("IMAP", error) from error
    try:
        if settings.security == Security.STARTTLS:
            client.starttls(policy.ssl_context())
        if settings.xoauth2:
            client.sasl_login("XOAUTH2", xoauth2_responder(settings.username, settings.password))
        elif (settings.username + settings.password).isascii():
            client.login(settings.username, settings.password)
        else:  # LOGIN cannot carry non-ASCII; AUTHENTICATE PLAIN sends UTF-8
            client.plain_login(settings.username, settings.password)
        return client
    except LoginError as error:
        close_quietly(client)
        if is_temporary_login_failure(error):
            raise login_unavailable() from error
        if settings.xoauth2:
            raise token_refused_imap() from error
        raise MailboxError("imap_login", "IMAPサーバーにログインできません。ユーザー名とパスワードを確認してください。") from error
    except IMAPClient.AbortError as error:  # Exchange Online: "BYE ... AccessTokenExpired"
        close_quietly(client)
        if settings.xoauth2 and is_token_expiry(error):
            raise token_refused_imap() from error
        raise MailboxError("not_imap", "IMAPサーバーが接続を受け付けません。暗号化の設定を確認してください。") from error
    except IMAPClient.Error as error:
        close_quietly(client)
        raise MailboxError("not_imap", "IMAPサーバーが接続を受け付けません。暗号化の設定を確認してください。") from error
    except (OSError, ssl.SSLError) as error:
        close_quietly(client)
        raise network_error("IMAP", error) from error


def response_code(error: BaseException) -> str | None:
    """The bracketed response code of a server's NO ("[UNAVAILABLE] ..."), if it sent one."""
    match = re.search(r"\[([A-Z][A-Z0-9-]*)", str(error))
    return match.group(1) if match else None


def is_temporary_login_failure(error: BaseException) -> bool:
    """Whether a refused login says the server cannot check credentials now (try later) rather than refusing them."""
    return response_code(error) in TEMPORARY_LOGIN_CODES


def login_unavailable() -> MailboxError:
    """The server could not check the login for now: エラー with backoff, never 要再認証."""
    return MailboxError("imap_unavailable", "メールサーバーが一時的にログインを受け付けていません（サーバー側の障害）。"
                                            "自動的に再試行します。")


SMTP_WITHOUT_AUTH = ("このSMTPサーバーは認証（SMTP AUTH）に対応していません。社内の中継サーバーなど、ログインなしで送信する"
                     "サーバーの場合は「SMTP認証なし」を選んでください。")


def open_smtp(settings: ServerSettings, policy: ConnectionPolicy) -> smtplib.SMTP:
    """Connect and log in to SMTP; raises MailboxError with the member's message."""
    check_policy("SMTP", settings, policy)
    addresses = checked_addresses("SMTP", settings, policy)
    try:
        if settings.security == Security.SSL:
            smtp = network.PinnedSMTPSSL(settings.host, settings.port, addresses, timeout=policy.timeout,
                                         context=policy.ssl_context())
        else:
            smtp = network.PinnedSMTP(settings.host, settings.port, addresses, timeout=policy.timeout)
    except smtplib.SMTPException as error:
        raise MailboxError("smtp_rejected", "SMTPサーバーが接続を受け付けません。ポート番号を確認してください。") from error
    except (OSError, ssl.SSLError) as error:
        raise network_error("SMTP", error) from error
    try:
        smtp.ehlo()
        if settings.security == Security.STARTTLS:
            smtp.starttls(context=policy.ssl_context())
            smtp.ehlo()
        if settings.xoauth2:
            smtp.auth("XOAUTH2", xoauth2_responder(settings.username, settings.password), initial_response_ok=True)
        elif settings.authenticate:
            if not smtp.has_extn("auth"):  # a relay without AUTH: say so, not "check the encryption"
                close_quietly(smtp)
                raise MailboxError("smtp_no_auth", SMTP_WITHOUT_AUTH)
            _smtp_login(smtp, settings.username, settings.password)
        return smtp
    except smtplib.SMTPAuthenticationError as error:
        close_quietly(smtp)
        if 400 <= error.smtp_code < 500:  # 454 4.7.0: the server cannot check credentials now, nothing refused
            raise MailboxError("smtp_unavailable", "SMTPサーバーが一時的にログインを受け付けていません（サーバー側の障害）。"
                                                   "時間をおいてもう一度お試しください。") from error
        if settings.xoauth2:
            raise smtp_token_error(error) from error
        raise MailboxError("smtp_login", "SMTPサーバーにログインできません。ユーザー名とパスワードを確認してください。") from error
    except smtplib.SMTPException as error:
        close_quietly(smtp)
        raise MailboxError("smtp_rejected", "SMTPサーバーが接続を受け付けません。"
                                            "暗号化（SSL/TLS・STARTTLS）の設定を確認してください。") from error
    except (OSError, ssl.SSLError) as error:
        close_quietly(smtp)
        raise network_error("SMTP", error) from error


def token_refused_imap() -> MailboxError:
    """IMAP refused the access token (AUTHENTICATIONFAILED or AccessTokenExpired)."""
    return MailboxError("imap_token", "IMAPサーバーがアクセストークンを受け付けませんでした。"
                                      "メールボックスでIMAPが有効か、管理者に確認してください。")
# Codes of a refused token: the connector refreshes once and retries before giving up.
TOKEN_REFUSED_CODES = frozenset({"imap_token", "smtp_token"})


def xoauth2_responder(username: str, access_token: str):
    """SASL XOAUTH2 for imaplib/smtplib: the initial response, then an empty line to an error challenge.

    After a refused token the server sends a JSON error as a challenge; the client must answer with an empty
    line (Google's XOAUTH2 protocol). imapclient's oauth2_login sends the token again, which some servers hang on.
    """
    initial = f"user={username}\x01auth=Bearer {access_token}\x01\x01"

    def respond(challenge: bytes | None = None) -> str:
        """Empty challenge (or smtplib's initial-response call): the token; anything else: an error, answer ""."""
        return "" if challenge else initial
    return respond


def is_token_expiry(error: BaseException) -> bool:
    """Exchange Online drops sessions with "BYE Session invalidated - AccessTokenExpired"."""
    return "AccessTokenExpired" in str(error)


def smtp_token_error(error: smtplib.SMTPAuthenticationError) -> MailboxError:
    """535 for a refused token; 5.7.139 means the tenant or mailbox has SMTP AUTH turned off."""
    text = error.smtp_error.decode("utf-8", "replace") if isinstance(error.smtp_error, bytes) else str(error.smtp_error)
    if "5.7.139" in text:
        return MailboxError("smtp_auth_disabled",
                            "このメールボックスではSMTP認証（SMTP AUTH）が無効になっています。Microsoft 365 管理センターで、"
                            "このユーザーの「メール」→「メールアプリの管理」にある「認証済み SMTP」を有効にするよう、"
                            "テナントの管理者に依頼してください（組織全体で無効な場合は Exchange の "
                            "SmtpClientAuthenticationDisabled の設定も確認が必要です）。")
    return MailboxError("smtp_token", "SMTPサーバーがアクセストークンを受け付けませんでした。")


def _smtp_login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """Log in; smtplib only encodes ASCII credentials, so non-ASCII ones go as UTF-8 AUTH PLAIN."""
    if (username + password).isascii():
        smtp.login(username, password)
        return
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("AUTH not supported")
    token = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode()).decode()
    code, response = smtp.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, response)


def close_quietly(connection) -> None:
    """Drop a half-open connection without letting its own errors hide the real one."""
    try:
        if isinstance(connection, IMAPClient):
            connection.shutdown()
        else:
            connection.close()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass
