"""Real mail servers for integration tests: a throwaway PKI, a private Dovecot (IMAP) and an aiosmtpd SMTP server."""
import datetime
import ipaddress
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import imapclient
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (kernel-chosen ephemeral: never 25/143/465/587/993)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class MailUser:
    """Login of a test mailbox (IMAP or SMTP)."""

    email: str
    password: str


# ---- PKI ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM files: a throwaway CA, a server certificate it signed, and an unrelated self-signed certificate."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    untrusted_cert_file: Path
    untrusted_key_file: Path


def make_test_pki(folder) -> Pki:
    """Write a CA, a localhost/127.0.0.1 server certificate signed by it, and an untrusted self-signed one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, untrusted_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_cert = _certificate("Portal Test CA", ca_key, is_ca=True, for_server=False)
    server_cert = _certificate("localhost", server_key, is_ca=False, for_server=True, issuer=(ca_cert, ca_key))
    # Self-signed and marked as a CA so a client *can* choose to trust it (as an "extra CA file") and then pass.
    untrusted_cert = _certificate("Untrusted localhost", untrusted_key, is_ca=True, for_server=True)
    pki = Pki(ca_file=folder / "ca.pem", cert_file=folder / "server.pem", key_file=folder / "server.key",
              untrusted_cert_file=folder / "untrusted.pem", untrusted_key_file=folder / "untrusted.key")
    _write_cert(pki.ca_file, ca_cert)
    _write_cert(pki.cert_file, server_cert)
    _write_key(pki.key_file, server_key)
    _write_cert(pki.untrusted_cert_file, untrusted_cert)
    _write_key(pki.untrusted_key_file, untrusted_key)
    return pki


def _certificate(common_name, key, *, is_ca, for_server, issuer=None) -> x509.Certificate:
    """Build a certificate for key, signed by issuer=(cert, key) or self-signed."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        # Back-dated an hour so small clock differences never make it "not yet valid".
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(_key_usage(is_ca), critical=True)
        # SKI/AKI: strict verifiers (Python 3.13's VERIFY_X509_STRICT) reject chains without them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
    )
    if for_server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
        builder = (builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return builder.sign(signing_key, hashes.SHA256())


def _key_usage(is_ca) -> x509.KeyUsage:
    """digitalSignature for TLS (ECDHE-ECDSA); certificate/CRL signing for CAs."""
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=is_ca, crl_sign=is_ca,
                         encipher_only=False, decipher_only=False)


def _write_cert(path, cert) -> None:
    """Write a certificate as PEM."""
    Path(path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path, key) -> None:
    """Write an unencrypted PKCS#8 PEM private key, readable by its owner only."""
    Path(path).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    os.chmod(path, 0o600)


# ---- Dovecot --------------------------------------------------------------------------------------------------

# Dovecot 2.3 (Debian 12); adapted from the verified template in the team notes.
DOVECOT_2_3_CONF = r"""
protocols = @PROTOCOLS@
listen = 127.0.0.1
base_dir = @RUN@/run
state_dir = @RUN@/state
instance_name = @INSTANCE@
log_path = @RUN@/log/dovecot.log
info_log_path = @RUN@/log/dovecot-info.log
debug_log_path = @RUN@/log/dovecot-debug.log
log_timestamp = "%Y-%m-%d %H:%M:%S "
default_internal_user = @INTERNAL_USER@
default_internal_group = @INTERNAL_GROUP@
default_login_user = @LOGIN_USER@

ssl = yes
ssl_cert = <@RUN@/etc/cert.pem
ssl_key = <@RUN@/etc/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = @AUTH_MECHANISMS@
# Failed logins answer at once instead of after 2 s.
auth_failure_delay = 0
# No auth cache: a token revoked at the provider must fail at the next login, not an hour later.
auth_cache_size = 0
@OAUTH2@

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u @RUN@/etc/users/%u
@PASSWD_MECHANISMS@
}
userdb {
  driver = static
  args = uid=@MAIL_UID@ gid=@MAIL_GID@ home=@RUN@/mail/%d/%n
}

# LAYOUT=fs: Maildir++ would reject "." in folder names ("Projects.2024"), which real servers allow.
mail_location = maildir:~/Maildir:LAYOUT=fs
mail_uid = @MAIL_UID@
mail_gid = @MAIL_GID@
first_valid_uid = @FIRST_UID@
first_valid_gid = @FIRST_GID@

namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \Junk
    auto = subscribe
  }
}

# No per-IP auth penalty: every test logs in from 127.0.0.1, so one wrong-password test would otherwise delay
# all later logins (2 s doubling up to 15 s) and make timeouts in unrelated tests.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = @IMAP_PORT@
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = @IMAPS_PORT@
    ssl = yes
  }
}
@SUBMISSION@
"""

# Token logins (XOAUTH2/OAUTHBEARER) checked by RFC 7662 introspection at the test provider; passwords stay with
# the passwd-file passdb, so the tests can still fill mailboxes by password.
DOVECOT_2_3_OAUTH2 = r"""
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = @RUN@/etc/dovecot-oauth2.conf.ext
}
"""
DOVECOT_2_3_OAUTH2_EXT = r"""introspection_mode = post
introspection_url = @INTROSPECTION_URL@
username_attribute = username
active_attribute = active
active_value = true
scope = @SCOPE@
"""

# Submission (SMTP AUTH, incl. XOAUTH2) relaying every accepted message to the aiosmtpd sink.
DOVECOT_2_3_SUBMISSION = r"""
hostname = localhost
submission_relay_host = 127.0.0.1
submission_relay_port = @RELAY_PORT@
service submission-login {
  inet_listener submission {
    address = 127.0.0.1
    port = @SUBMISSION_PORT@
  }
  inet_listener submissions {
    address = 127.0.0.1
    port = @SUBMISSIONS_PORT@
    ssl = yes
  }
}
"""

# Dovecot 2.4 (Debian 13): renamed settings, named passdb/userdb, %{user | domain} variables.
DOVECOT_2_4_CONF = r"""
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
protocols = @PROTOCOLS@
listen = 127.0.0.1
base_dir = @RUN@/run
state_dir = @RUN@/state
instance_name = @INSTANCE@
log_path = @RUN@/log/dovecot.log
info_log_path = @RUN@/log/dovecot-info.log
debug_log_path = @RUN@/log/dovecot-debug.log
log_timestamp = "%Y-%m-%d %H:%M:%S "
default_internal_user = @INTERNAL_USER@
default_internal_group = @INTERNAL_GROUP@
default_login_user = @LOGIN_USER@

# A file path, not "<file": "<" passes doveconf -n but then fails at start.
ssl_server_cert_file = @RUN@/etc/cert.pem
ssl_server_key_file = @RUN@/etc/key.pem
auth_allow_cleartext = yes
auth_mechanisms = @AUTH_MECHANISMS@
# Failed logins answer at once instead of after 2 s.
auth_failure_delay = 0
# No auth cache: a token revoked at the provider must fail at the next login, not an hour later.
auth_cache_size = 0
@OAUTH2@

passdb passwd-file {
  passwd_file_path = @RUN@/etc/users/%{user}
  default_password_scheme = PLAIN
  auth_username_format = %{user}
}
userdb static {
  fields {
    uid = @MAIL_UID@
    gid = @MAIL_GID@
    home = @RUN@/mail/%{user | domain}/%{user | username}
  }
}

mail_driver = maildir
mail_path = ~/Maildir
# Must be written out: without it "." in folder names is refused, yet doveconf shows "fs" either way.
mailbox_list_layout = fs
mail_uid = @MAIL_UID@
mail_gid = @MAIL_GID@
first_valid_uid = @FIRST_UID@
first_valid_gid = @FIRST_GID@

namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \Junk
    auto = subscribe
  }
}

# No per-IP auth penalty: every test logs in from 127.0.0.1, so one wrong-password test would otherwise delay
# all later logins (2 s doubling up to 15 s) and make timeouts in unrelated tests.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    port = @IMAP_PORT@
  }
  inet_listener imaps {
    port = @IMAPS_PORT@
    ssl = yes
  }
}
@SUBMISSION@
"""

# 2.4: the OAuth2 mechanisms no longer go through a passdb; settings live in the oauth2 { } filter.
DOVECOT_2_4_OAUTH2 = r"""
oauth2 {
  introspection_mode = post
  introspection_url = @INTROSPECTION_URL@
  username_attribute = username
  active_attribute = active
  active_value = true
  scope = @SCOPE@
}
"""

DOVECOT_2_4_SUBMISSION = r"""
hostname = localhost
submission_relay_host = 127.0.0.1
submission_relay_port = @RELAY_PORT@
service submission-login {
  inet_listener submission {
    port = @SUBMISSION_PORT@
  }
  inet_listener submissions {
    port = @SUBMISSIONS_PORT@
    ssl = yes
  }
}
"""


def find_dovecot() -> str | None:
    """Path of the dovecot binary; /usr/sbin is searched too because it is often missing from PATH."""
    return shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")


def dovecot_version(binary: str) -> tuple[int, int]:
    """(major, minor) from `dovecot --version`, e.g. "2.3.19.1 (9b53102964)" -> (2, 3)."""
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    major, minor = re.match(r"\s*(\d+)\.(\d+)", output).groups()
    return int(major), int(minor)


class Dovecot:
    """A private Dovecot on 127.0.0.1: implicit TLS on imaps_port, plaintext/STARTTLS on imap_port."""

    MAIL_OWNER = "nobody"  # Dovecot refuses to access mail as root

    def __init__(self, pki: Pki, *, use_untrusted_cert: bool = False, mail_fsync: str | None = None,
                 oauth2_introspection_url: str | None = None, oauth2_scope: str = "mail",
                 submission_relay_port: int | None = None, max_sessions: int | None = None):
        self.host = HOST
        # Benchmarks keeping many sessions open: room for that many (default: Dovecot's 100 login processes).
        self.max_sessions = max_sessions
        # Token logins (XOAUTH2/OAUTHBEARER) checked at this RFC 7662 endpoint; None: passwords only.
        self.oauth2_introspection_url = oauth2_introspection_url
        self.oauth2_scope = oauth2_scope
        # Submission (SMTP on submission_port with STARTTLS, implicit TLS on submissions_port) relaying here.
        self.submission_relay_port = submission_relay_port
        self.submission_port = free_port() if submission_relay_port else None
        self.submissions_port = free_port() if submission_relay_port else None
        # Dovecot's own default (optimized) unless asked: "never" is for benchmarks, never for crash-safety tests.
        self.mail_fsync = mail_fsync
        self.imap_port = free_port()
        self.imaps_port = free_port()
        while self.imaps_port == self.imap_port:
            self.imaps_port = free_port()
        self.cert_file = pki.untrusted_cert_file if use_untrusted_cert else pki.cert_file
        self.key_file = pki.untrusted_key_file if use_untrusted_cert else pki.key_file
        # What a client must trust to verify this server: the CA, or the self-signed certificate itself.
        self.ca_file = pki.untrusted_cert_file if use_untrusted_cert else pki.ca_file
        self.instance_name = f"portal-test-{secrets.token_hex(4)}"
        self.users: dict[str, str] = {}
        self.root: Path | None = None
        self._process: subprocess.Popen | None = None

    @property
    def config_file(self) -> Path:
        """The instance's dovecot.conf."""
        return self.root / "etc" / "dovecot.conf"

    def start(self) -> "Dovecot":
        """Write the config, start `dovecot -F`, and return once IMAP logins work on both ports."""
        binary = find_dovecot()
        if binary is None:
            raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd)")
        if os.geteuid() != 0:
            raise RuntimeError("the test Dovecot runs as root (mail owned by nobody): run the tests as root")
        self._prepare_root()
        version = dovecot_version(binary)
        self.config_file.write_text(self._render_config(version))
        if self.oauth2_introspection_url is not None and version < (2, 4):
            ext = DOVECOT_2_3_OAUTH2_EXT.replace("@INTROSPECTION_URL@", self.oauth2_introspection_url)
            ext_file = self.root / "etc" / "dovecot-oauth2.conf.ext"
            ext_file.write_text(ext.replace("@SCOPE@", self.oauth2_scope))
            os.chmod(ext_file, 0o644)  # read by the auth process (user dovecot)
        for email, password in self.users.items():
            self._write_passwd(email, password)
        with open(self.root / "log" / "master.out", "wb") as out:
            # -F keeps the master in the foreground, so we own its pid and can wait for it.
            self._process = subprocess.Popen([binary, "-F", "-c", str(self.config_file)],
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_until_ready()
        except Exception as error:
            log = self.log_tail()
            self.stop()
            raise RuntimeError(f"Dovecot did not start: {error}\n--- Dovecot log tail ---\n{log}") from error
        return self

    def stop(self) -> None:
        """Stop the instance (`doveadm stop`), wait until all its processes are gone, remove its folder."""
        if self._process is not None:
            self._stop_master()
            self._process = None
            self._wait_for_children()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self):
        """`with Dovecot(pki) as server:` starts it."""
        return self.start()

    def __exit__(self, *exc_info):
        """Stops it."""
        self.stop()

    def add_user(self, email: str, password: str) -> MailUser:
        """Add (or re-password) a user; works while running (one passwd-file per user, read on login)."""
        if any(bad in email + password for bad in ":\r\n") or "/" in email or email.startswith("."):
            raise ValueError(f"unusable test login {email!r}: no ':', '/', line breaks or leading '.'")
        changed = self.users.get(email) not in (None, password)
        self.users[email] = password
        if self.root is not None:
            # Dovecot re-checks a known passwd-file at most once a second, comparing mtime (whole seconds) and
            # size; a new user gets a new file (seen at once), a changed password needs a second on each side.
            self._pause_if(changed)
            self._write_passwd(email, password)
            self._pause_if(changed)
        return MailUser(email, password)

    @staticmethod
    def _pause_if(needed: bool) -> None:
        """Sleep just over a second when needed (see add_user)."""
        if needed:
            time.sleep(1.1)

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client TLS context that trusts this server's certificate (ca_file)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def connect(self, email: str, password: str, *, tls: bool = True) -> imapclient.IMAPClient:
        """A logged-in IMAPClient: implicit TLS on imaps_port trusting ca_file, or plaintext on imap_port."""
        if tls:
            client = imapclient.IMAPClient(self.host, self.imaps_port, ssl=True, ssl_context=self.ssl_context(),
                                           timeout=10)
        else:
            client = imapclient.IMAPClient(self.host, self.imap_port, ssl=False, timeout=10)
        try:
            if (email + password).isascii():
                client.login(email, password)
            else:  # imaplib sends LOGIN arguments as ASCII only; AUTHENTICATE PLAIN carries UTF-8
                client.plain_login(email, password)
        except Exception:
            client.shutdown()
            raise
        return client

    def connect_with_token(self, email: str, access_token: str) -> imapclient.IMAPClient:
        """An IMAPClient logged in by XOAUTH2 over implicit TLS (raises LoginError when refused)."""
        client = imapclient.IMAPClient(self.host, self.imaps_port, ssl=True, ssl_context=self.ssl_context(),
                                       timeout=10)
        try:
            client.oauth2_login(email, access_token)
        except Exception:
            client.shutdown()
            raise
        return client

    def flush_auth_cache(self) -> None:
        """`doveadm auth cache flush` (a no-op with auth_cache_size = 0, but what a real server would need)."""
        subprocess.run([_doveadm(), "-c", str(self.config_file), "auth", "cache", "flush"], check=True,
                       capture_output=True, timeout=10)

    def kick(self, email: str) -> str:
        """`doveadm kick`: the server drops every IMAP session of the user (as a restart or an admin would)."""
        return subprocess.run([_doveadm(), "-c", str(self.config_file), "kick", email], check=True,
                              capture_output=True, text=True, timeout=10).stdout

    def append(self, email, password, folder, message_bytes, flags=(), msg_time=None) -> int:
        """APPEND a raw message over TLS and return its UID (Dovecot answers APPENDUID)."""
        with self.connect(email, password) as client:
            response = client.append(folder, message_bytes, flags=flags, msg_time=msg_time)
        return int(re.search(rb"APPENDUID \d+ (\d+)", response).group(1))

    def create_folder(self, email: str, password: str, name: str) -> None:
        """CREATE a folder (imapclient encodes non-ASCII names as modified UTF-7)."""
        with self.connect(email, password) as client:
            client.create_folder(name)

    def delete_folder(self, email: str, password: str, name: str) -> None:
        """DELETE a folder; re-creating it later gives it a new UIDVALIDITY."""
        with self.connect(email, password) as client:
            client.delete_folder(name)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of each of the instance's log files (for failure messages)."""
        if self.root is None:
            return "(no log: not started)"
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                parts.append(f"==> {path.name} <==\n" + "\n".join(text))
        return "\n".join(parts) or "(logs are empty)"

    def _prepare_root(self) -> None:
        """Create the private folder tree; mail belongs to the unprivileged mail owner."""
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
        # mkdtemp makes 0700; Dovecot's auth (user dovecot) and mail (nobody) processes must get inside.
        self.root.chmod(0o755)
        for name in ("run", "state", "log", "etc", "etc/users", "mail"):
            (self.root / name).mkdir()
        owner = pwd.getpwnam(self.MAIL_OWNER)
        os.chown(self.root / "mail", owner.pw_uid, owner.pw_gid)
        shutil.copyfile(self.cert_file, self.root / "etc" / "cert.pem")
        shutil.copyfile(self.key_file, self.root / "etc" / "key.pem")
        # A throwaway key; world-readable so it works whichever Dovecot process (2.3 or 2.4) opens it.
        os.chmod(self.root / "etc" / "key.pem", 0o644)

    def _render_config(self, version: tuple[int, int]) -> str:
        """Fill the 2.3 or 2.4 template's @VAR@ placeholders."""
        owner = pwd.getpwnam(self.MAIL_OWNER)
        values = {"RUN": self.root, "INSTANCE": self.instance_name, "INTERNAL_USER": "dovecot",
                  "INTERNAL_GROUP": "dovecot", "LOGIN_USER": "dovenull", "MAIL_UID": owner.pw_uid,
                  "MAIL_GID": owner.pw_gid, "FIRST_UID": owner.pw_uid, "FIRST_GID": owner.pw_gid,
                  "IMAP_PORT": self.imap_port, "IMAPS_PORT": self.imaps_port}
        new_form = version >= (2, 4)
        text = DOVECOT_2_4_CONF if new_form else DOVECOT_2_3_CONF
        oauth = self.oauth2_introspection_url is not None
        # The optional blocks go in first: they carry placeholders of their own.
        blocks = {
            "OAUTH2": (DOVECOT_2_4_OAUTH2 if new_form else DOVECOT_2_3_OAUTH2) if oauth else "",
            "SUBMISSION": "" if not self.submission_relay_port else (
                DOVECOT_2_4_SUBMISSION if new_form else DOVECOT_2_3_SUBMISSION),
        }
        values.update({
            "PROTOCOLS": "imap submission" if self.submission_relay_port else "imap",
            "AUTH_MECHANISMS": "plain login xoauth2 oauthbearer" if oauth else "plain login",
            "PASSWD_MECHANISMS": "  mechanisms = plain login" if oauth else "",
            "INTROSPECTION_URL": self.oauth2_introspection_url, "SCOPE": self.oauth2_scope,
            "RELAY_PORT": self.submission_relay_port, "SUBMISSION_PORT": self.submission_port,
            "SUBMISSIONS_PORT": self.submissions_port,
        })
        for name, value in [*blocks.items(), *values.items()]:
            text = text.replace(f"@{name}@", str(value))
        if self.mail_fsync is not None:
            text += f"mail_fsync = {self.mail_fsync}\n"
        if self.max_sessions is not None:
            # One imap-login process proxies many TLS sessions (high-performance mode) instead of one each.
            reuse = "restart_request_count = unlimited" if new_form else "service_count = 0"
            text += (f"service imap-login {{\n  {reuse}\n  client_limit = {self.max_sessions}\n"
                     f"  process_min_avail = 2\n}}\nservice imap {{\n  process_limit = {self.max_sessions}\n}}\n")
        leftover = re.search(r"@[A-Z_]+@", text)
        if leftover:
            raise AssertionError(f"unfilled placeholder {leftover.group()} in the Dovecot config")
        return text

    def _write_passwd(self, email: str, password: str) -> None:
        """Write the user's own passwd-file atomically, so a running Dovecot never reads half a file."""
        path = self.root / "etc" / "users" / email
        temp = path.with_name(f".{email}.new")
        temp.write_text(f"{email}:{{PLAIN}}{password}\n", encoding="utf-8")
        os.replace(temp, path)

    def _wait_until_ready(self) -> None:
        """Wait for both listeners, then log a probe user in over TLS (verifying the cert) and in plaintext."""
        deadline = time.monotonic() + START_TIMEOUT
        ports = [self.imaps_port, self.imap_port] + ([self.submission_port, self.submissions_port]
                                                      if self.submission_relay_port else [])
        for port in ports:
            while not _accepts(self.host, port):
                if self._process.poll() is not None:
                    raise RuntimeError(f"dovecot exited with code {self._process.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing listens on {self.host}:{port} after {START_TIMEOUT}s")
                time.sleep(0.05)
        probe = self.add_user("probe@dovecot.test", secrets.token_urlsafe(12))
        for tls in (True, False):
            self.connect(probe.email, probe.password, tls=tls).logout()

    def _stop_master(self, timeout: float = 30.0) -> None:
        """`doveadm stop`, reaping the master meanwhile (doveadm waits 3 s on a zombie child of ours)."""
        stopper = subprocess.Popen([_doveadm(), "-c", str(self.config_file), "stop"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while self._process.poll() is None and stopper.poll() in (None, 0) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._process.poll() is None:  # doveadm failed or hangs: the master is our child, end it by pid
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        try:
            stopper.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stopper.kill()
            stopper.wait()

    def _wait_for_children(self, timeout: float = 10.0) -> None:
        """Wait until no process titled '<instance_name>/...' is left; SIGKILL stragglers of ours."""
        deadline = time.monotonic() + timeout
        while (pids := _pids_titled(f"{self.instance_name}/")) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)


def _doveadm() -> str:
    """Path of doveadm (next to dovecot on Debian's PATH, /usr/bin)."""
    return shutil.which("doveadm") or shutil.which("doveadm", path="/usr/bin:/usr/sbin") or "doveadm"


def _accepts(host: str, port: int) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _pids_titled(marker: str) -> list[int]:
    """Pids whose command line contains marker (Dovecot children are titled 'dovecot-<instance>/<service>')."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:  # the process ended while we looked
            continue
    return pids


# ---- SMTP -----------------------------------------------------------------------------------------------------


class _HideLoginDataDeprecation(logging.Filter):
    """Drop the deprecation warning aiosmtpd 1.4 logs from its own code on every successful AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every other record."""
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_HideLoginDataDeprecation())


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    auth_user: str | None


class SmtpServer:
    """A real aiosmtpd SMTP server on 127.0.0.1 with AUTH PLAIN/LOGIN; security is "ssl", "starttls" or "none"."""

    SECURITIES = ("ssl", "starttls", "none")

    def __init__(self, pki: Pki, security: str = "ssl", *, users: dict[str, str] | None = None,
                 auth_required: bool = True, use_untrusted_cert: bool = False, offer_auth: bool = True):
        if security not in self.SECURITIES:
            raise ValueError(f"security must be one of {self.SECURITIES}, not {security!r}")
        self.host = HOST
        self.port: int | None = None
        self.security = security
        self.auth_required = auth_required
        # Off for a relay target: Dovecot submission would then add MAIL FROM AUTH=, which aiosmtpd refuses (555).
        self.offer_auth = offer_auth
        self.users: dict[str, str] = dict(users or {})
        self.messages: list[ReceivedMessage] = []
        self.rejected_recipients: set[str] = set()  # RCPT TO these gets 550, like an unknown mailbox
        self.cert_file = pki.untrusted_cert_file if use_untrusted_cert else pki.cert_file
        self.key_file = pki.untrusted_key_file if use_untrusted_cert else pki.key_file
        self.ca_file = pki.untrusted_cert_file if use_untrusted_cert else pki.ca_file
        self._controller: Controller | None = None

    def start(self) -> "SmtpServer":
        """Listen on a free port; Controller.start() returns after its own (TLS-aware) test connection."""
        tls = self._server_tls_context() if self.security != "none" else None
        self.port = free_port()
        self._controller = Controller(
            _Recorder(self), hostname=HOST, port=self.port,
            # Implicit TLS: the listening socket itself is wrapped; STARTTLS: the SMTP session upgrades.
            ssl_context=tls if self.security == "ssl" else None,
            tls_context=tls if self.security == "starttls" else None,
            # aiosmtpd only counts a STARTTLS upgrade as "TLS", so on an implicit-TLS port it would answer AUTH
            # with 538; starttls keeps AUTH hidden until after STARTTLS, "none" allows it in plaintext.
            # Not offering AUTH at all (relay target): aiosmtpd hides it until TLS, which a "none" server never has.
            auth_require_tls=self.security == "starttls" or not self.offer_auth,
            # MAIL-before-AUTH is refused by _Recorder.handle_MAIL: aiosmtpd's own auth_required warns whenever
            # auth_require_tls is off (which implicit TLS needs).
            auth_required=False,
            authenticator=self._authenticate,
            server_hostname="localhost",  # the banner name; the default calls socket.getfqdn() (slow DNS)
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop the server thread and free the port."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self):
        """`with SmtpServer(pki, "ssl") as server:` starts it."""
        return self.start()

    def __exit__(self, *exc_info):
        """Stops it."""
        self.stop()

    def add_user(self, username: str, password: str) -> MailUser:
        """Allow AUTH with this username/password (takes effect at once, also while running)."""
        self.users[username] = password
        return MailUser(username, password)

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client TLS context that trusts this server's certificate (ca_file)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _server_tls_context(self) -> ssl.SSLContext:
        """Server-side TLS with the certificate; no client certificates (aiosmtpd warns otherwise)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        """aiosmtpd authenticator: PLAIN/LOGIN credentials must match self.users."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if username in self.users and self.users[username] == password:
            return AuthResult(success=True, auth_data=username)
        return AuthResult(success=False, handled=False)


class _Recorder:
    """aiosmtpd handler: refuses MAIL before AUTH (when required) and records accepted messages."""

    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802 (aiosmtpd's name)
        """Like aiosmtpd's default MAIL, but with a 530 when the client has not authenticated."""
        if self.server.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's name)
        """Accept a recipient unless the test marked it as unknown."""
        if address.lower() in self.server.rejected_recipients:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Record the envelope and raw bytes."""
        self.server.messages.append(ReceivedMessage(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                                                    data=envelope.original_content, auth_user=session.auth_data))
        return "250 OK: queued"
