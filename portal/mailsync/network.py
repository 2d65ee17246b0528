"""Where the portal may connect: a host name resolved once, its addresses checked, the socket opened to them.

Members type the host names, so without this the server would connect wherever they point it: its own loopback
services, link-local cloud metadata, 0.0.0.0. Those networks are refused unless the operator opens them with
MAIL_ALLOWED_NETWORKS; private ranges stay allowed (company mail servers live there). The connection goes to the
address that was checked, never to a second lookup (DNS rebinding); TLS still verifies the host name.
"""
import ipaddress
import smtplib
import socket
from typing import Iterable

from imapclient import IMAPClient
from imapclient.imap4 import IMAP4WithTimeout
from imapclient.tls import IMAP4_TLS
from imapclient.tls import wrap_socket as imap_wrap_socket

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Loopback, link-local, unspecified/"this network", multicast and broadcast. ::/96 also holds the deprecated
# IPv4-compatible spellings (::127.0.0.1); IPv4-mapped ones (::ffff:127.0.0.1) are checked as IPv4.
GUARDED_NETWORKS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(cidr) for cidr in (
    "127.0.0.0/8", "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32",
    "::/96", "fe80::/10", "ff00::/8"))


class AddressRefused(Exception):
    """Every address the host name resolves to lies in a guarded network the operator has not opened."""


def parse_networks(value) -> tuple[IPNetwork, ...]:
    """MAIL_ALLOWED_NETWORKS as networks: a comma-separated string of CIDRs, or a list of them.

    Raises ValueError for something that is not a network, so a typo stops the portal at start instead of
    silently leaving a network closed.
    """
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(ipaddress.ip_network(str(item).strip(), strict=False) for item in items if str(item).strip())


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it is (the kernel connects it there)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    """Whether the address lies in one of the networks (versions compared first: IPv4 is never in an IPv6 net)."""
    return any(address.version == network.version and address in network for network in networks)


def is_allowed(address: str, allowed_networks: Iterable[IPNetwork] = ()) -> bool:
    """Whether the portal may connect to this literal address under the operator's opened networks."""
    ip = _plain(ipaddress.ip_address(address.split("%")[0]))
    allowed_networks = tuple(allowed_networks)
    return _within(ip, allowed_networks) or not _within(ip, GUARDED_NETWORKS)


def resolve(host: str, port: int, allowed_networks: Iterable[IPNetwork] = ()) -> list[tuple]:
    """Resolve once; the (family, sockaddr) pairs the portal may connect to, in the resolver's order.

    Raises socket.gaierror when the name does not resolve and AddressRefused when every address it resolves
    to is guarded (addresses that are guarded are dropped when others remain).
    """
    allowed_networks = tuple(allowed_networks)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    usable = [(family, sockaddr) for family, _, _, _, sockaddr in infos
              if family in (socket.AF_INET, socket.AF_INET6) and is_allowed(sockaddr[0], allowed_networks)]
    if not usable:
        raise AddressRefused(host)
    return list(dict.fromkeys(usable))


def connect(addresses: list[tuple], timeout: float | None) -> socket.socket:
    """Open a TCP connection to the first of the checked addresses that answers (as socket.create_connection)."""
    last_error: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as error:
            sock.close()
            last_error = error
    raise last_error or OSError("no address to connect to")


def open_socket(host: str, port: int, allowed_networks: Iterable[IPNetwork], timeout: float | None) -> socket.socket:
    """Resolve, check and connect in one step (raises socket.gaierror, AddressRefused or OSError)."""
    return connect(resolve(host, port, allowed_networks), timeout)


# ---- IMAP and SMTP clients that connect to checked addresses --------------------------------------------------
# The libraries resolve self.host themselves; these subclasses keep self.host as the name (for TLS's SNI and
# certificate check, STARTTLS included) and open the socket to the address that was checked instead.

class _PinnedIMAP4(IMAP4WithTimeout):
    """Plain IMAP (and STARTTLS later) over a socket to a checked address."""

    def __init__(self, host: str, port: int, timeout: float | None, addresses: list[tuple]):
        self._addresses = addresses  # set before imaplib's __init__ opens the socket
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout=None) -> socket.socket:
        return connect(self._addresses, timeout if timeout is not None else self._timeout)


class _PinnedIMAP4TLS(IMAP4_TLS):
    """Implicit-TLS IMAP over a socket to a checked address, verified against the host name."""

    def __init__(self, host: str, port: int, ssl_context, timeout: float | None, addresses: list[tuple]):
        self._addresses = addresses
        super().__init__(host, port, ssl_context, timeout)

    def _create_socket(self, timeout=None) -> socket.socket:
        sock = connect(self._addresses, timeout if timeout is not None else self._timeout)
        try:
            return imap_wrap_socket(sock, self.ssl_context, self.host)
        except BaseException:
            sock.close()
            raise


class PinnedIMAPClient(IMAPClient):
    """IMAPClient whose connection goes to the addresses resolve() checked."""

    def __init__(self, host: str, addresses: list[tuple], **kwargs):
        self._addresses = addresses
        super().__init__(host, **kwargs)

    def _create_IMAP4(self):  # noqa: N802 (imapclient's name)
        connect_timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _PinnedIMAP4TLS(self.host, self.port, self.ssl_context, connect_timeout, self._addresses)
        return _PinnedIMAP4(self.host, self.port, connect_timeout, self._addresses)


class PinnedSMTP(smtplib.SMTP):
    """smtplib.SMTP (STARTTLS verifies self._host, the name) over a socket to a checked address."""

    def __init__(self, host: str, port: int, addresses: list[tuple], **kwargs):
        self._addresses = addresses
        super().__init__(host, port, **kwargs)

    def _get_socket(self, host, port, timeout):
        return connect(self._addresses, timeout)


class PinnedSMTPSSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL over a socket to a checked address, verified against the host name."""

    def __init__(self, host: str, port: int, addresses: list[tuple], **kwargs):
        self._addresses = addresses
        super().__init__(host, port, **kwargs)

    def _get_socket(self, host, port, timeout):
        sock = connect(self._addresses, timeout)
        try:
            return self.context.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
