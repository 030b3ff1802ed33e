"""POSTing to a customer's URL without letting the customer aim us at our own network.

The host is resolved once, every address it resolves to is checked, and the connection goes to
the checked address (with the original name for Host, SNI and the certificate), so a DNS answer
that changes between check and connect (rebinding) cannot reach a private address. No redirect
is followed, at most RESPONSE_READ_BYTES are read, and the whole exchange, name resolution
included, ends at a wall-clock deadline: a per-read timeout alone lets a receiver that trickles a byte every few seconds hold
a worker for as long as it likes (README "Alerts, spend caps and webhooks").
"""
from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

TIMEOUT_SECONDS = 5.0
RESPONSE_READ_BYTES = 1024
USER_AGENT = "Tollbooth-Webhooks/1.0"
TIMED_OUT = f"Timed out after {TIMEOUT_SECONDS:g} s"

# IPv6 forms that carry an IPv4 address: the IPv4 one is where the packet ends up, so it is the
# one judged (IPv4-mapped ::ffff:0:0/96 is unwrapped by `ipv4_mapped`, 6to4 by `sixtofour`).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Refused whatever they embed: local-use NAT64 (RFC 8215), Teredo (its IPv4 is obfuscated and
# its relays are anyone's), the deprecated IPv4-compatible and site-local ranges, and SIIT's
# IPv4-translated form. Python's `is_global` calls several of these global.
_REFUSED_V6 = tuple(ipaddress.ip_network(n) for n in (
    "64:ff9b:1::/48", "2001::/32", "::/96", "fec0::/10", "::ffff:0:0:0/96",
))


class AddressRefused(Exception):
    """The URL names, or resolves to, an address webhooks may not reach."""


@dataclass(frozen=True)
class PostResult:
    status: int | None
    body: str
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def address_is_public(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            address = embedded
        elif any(address in network for network in _REFUSED_V6):
            return False
    # is_global is False for private, loopback, link-local (169.254.169.254, the cloud metadata
    # address), shared (100.64/10), reserved and unspecified ranges; multicast is refused too.
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


class ResolveTimeout(OSError):
    """The host's name was not resolved within the delivery's deadline."""


def host_resolve(*, host: str, port: int, timeout: float) -> str:
    """The address to connect to; refuses a host any of whose addresses is not public.

    The system resolver cannot be interrupted and may take its own timeout several times over
    (per server, per attempt), so it runs in a thread of its own and the delivery waits for it at
    most `timeout` seconds; a lookup still running then finishes unheeded."""
    answer: list = []
    lookup = threading.Thread(target=_resolve_into, args=(answer, host, port), daemon=True,
                              name="webhook-resolve")
    lookup.start()
    lookup.join(timeout)
    if not answer:
        raise ResolveTimeout(f"resolving {host} took longer than the deadline")
    infos = answer[0]
    if isinstance(infos, Exception):
        raise AddressRefused(f"cannot resolve {host}: {infos}") from infos
    addresses = [info[4][0] for info in infos]
    if not settings.WEBHOOKS_ALLOW_PRIVATE and not all(address_is_public(a) for a in addresses):
        raise AddressRefused(f"{host} resolves to a private or reserved address")
    return addresses[0]


def _resolve_into(answer: list, host: str, port: int) -> None:
    try:
        answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError) as exc:
        answer.append(exc)


def request_headers(*, url: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    """Every header the POST carries, in order: what the delivery log shows as sent."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return [*headers.items(), ("Host", host_header), ("User-Agent", USER_AGENT)]


def webhook_post(*, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
    started = time.monotonic()
    deadline = _Deadline(TIMEOUT_SECONDS)
    try:
        status, text = _post(url, body, headers, deadline)
    except AddressRefused as exc:
        return PostResult(None, "", f"Refused: {exc}"[:300], _ms(started))
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        if deadline.expired or isinstance(exc, (urllib3.exceptions.TimeoutError, ResolveTimeout)):
            return PostResult(None, "", TIMED_OUT, _ms(started))
        return PostResult(None, "", f"{type(exc).__name__}: {exc}"[:300], _ms(started))
    if deadline.expired:
        # The status came in time but the rest of the answer did not: not delivered.
        return PostResult(None, "", TIMED_OUT, _ms(started))
    return PostResult(status, text, "", _ms(started))


def _post(url: str, body: bytes, headers: dict[str, str], deadline: _Deadline) -> tuple[int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused("only http(s) URLs with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ip = host_resolve(host=parts.hostname, port=port, timeout=deadline.remaining())
    deadline.start()
    pool = _pool(parts.scheme, ip, port, parts.hostname, deadline)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # Each socket operation also times out on its own; the deadline bounds their sum.
    timeout = urllib3.Timeout(connect=deadline.remaining(), read=deadline.remaining())
    try:
        response = pool.urlopen(
            "POST", path, body=body, headers=dict(request_headers(url=url, headers=headers)), redirect=False,
            retries=False, timeout=timeout, preload_content=False, assert_same_host=False,
        )
        # Never more than this much, whatever the receiver sends; the rest is left unread.
        text = response.read(RESPONSE_READ_BYTES, decode_content=False).decode("utf-8", errors="replace")
        response.close()
        return response.status, text
    finally:
        deadline.cancel()  # before the socket closes: its number may be reused at once
        pool.close()


class _Deadline:
    """Shuts the delivery's socket down at a wall-clock instant, which ends any read in progress
    (TLS handshake, headers or body) however the receiver paces its bytes."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        # File descriptors, not socket objects: wrapping a socket in TLS detaches the original.
        self._fds: list[int] = []
        self._done = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        # Name resolution came first (bounded by the same deadline) and spent part of the budget.
        self._timer = threading.Timer(max(self.at - time.monotonic(), 0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.01)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._fds.append(sock.fileno())
            if self.expired:
                _shutdown(sock.fileno())

    def cancel(self) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for fd in self._fds:
                _shutdown(fd)


def _shutdown(fd: int) -> None:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more
    finally:
        sock.detach()  # the connection still owns the descriptor and closes it


class _DeadlineConnection:
    """Hands each new socket to the delivery's deadline before anything is read from it."""

    def __init__(self, *args, deadline: _Deadline, **kwargs) -> None:
        self.deadline = deadline
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.deadline.watch(sock)
        return sock


class _HTTPConnection(_DeadlineConnection, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, urllib3.connection.HTTPSConnection):
    pass


def _pool(scheme: str, ip: str, port: int, hostname: str, deadline: _Deadline) -> urllib3.HTTPConnectionPool:
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            ip, port, maxsize=1, server_hostname=hostname, assert_hostname=hostname, cert_reqs="CERT_REQUIRED",
            deadline=deadline,
        )
        pool.ConnectionCls = _HTTPSConnection
        return pool
    pool = urllib3.HTTPConnectionPool(ip, port, maxsize=1, deadline=deadline)
    pool.ConnectionCls = _HTTPConnection
    return pool


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
