"""POSTing to a customer's URL without letting the customer aim us at our own network.

The host is resolved once, every address it resolves to is checked, and the connection goes to
the checked address (with the original name for Host, SNI and the certificate), so a DNS answer
that changes between check and connect (rebinding) cannot reach a private address. No redirect
is followed, every socket operation times out, and at most RESPONSE_READ_BYTES are read.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

TIMEOUT_SECONDS = 5.0
RESPONSE_READ_BYTES = 1024
USER_AGENT = "Tollbooth-Webhooks/1.0"
_TIMEOUT = urllib3.Timeout(connect=TIMEOUT_SECONDS, read=TIMEOUT_SECONDS)


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
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # is_global is False for private, loopback, link-local (169.254.169.254, the cloud metadata
    # address), shared (100.64/10), reserved and unspecified ranges; multicast is refused too.
    return address.is_global and not address.is_multicast


def host_resolve(*, host: str, port: int) -> str:
    """The address to connect to; refuses a host any of whose addresses is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"cannot resolve {host}: {exc}") from exc
    addresses = [info[4][0] for info in infos]
    if not settings.WEBHOOKS_ALLOW_PRIVATE and not all(address_is_public(a) for a in addresses):
        raise AddressRefused(f"{host} resolves to a private or reserved address")
    return addresses[0]


def webhook_post(*, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
    started = time.monotonic()
    try:
        status, text = _post(url, body, headers)
    except AddressRefused as exc:
        return PostResult(None, "", f"Refused: {exc}"[:300], _ms(started))
    except urllib3.exceptions.TimeoutError:
        return PostResult(None, "", f"Timed out after {TIMEOUT_SECONDS:g} s", _ms(started))
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        return PostResult(None, "", f"{type(exc).__name__}: {exc}"[:300], _ms(started))
    return PostResult(status, text, "", _ms(started))


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused("only http(s) URLs with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ip = host_resolve(host=parts.hostname, port=port)
    pool = _pool(parts.scheme, ip, port, parts.hostname)
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    all_headers = {**headers, "Host": host_header, "User-Agent": USER_AGENT}
    try:
        response = pool.urlopen(
            "POST", path, body=body, headers=all_headers, redirect=False, retries=False,
            timeout=_TIMEOUT, preload_content=False, assert_same_host=False,
        )
        # Never more than this much, whatever the receiver sends; the rest is left unread.
        text = response.read(RESPONSE_READ_BYTES, decode_content=False).decode("utf-8", errors="replace")
        response.close()
        return response.status, text
    finally:
        pool.close()


def _pool(scheme: str, ip: str, port: int, hostname: str) -> urllib3.HTTPConnectionPool:
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            ip, port, maxsize=1, server_hostname=hostname, assert_hostname=hostname, cert_reqs="CERT_REQUIRED",
        )
    return urllib3.HTTPConnectionPool(ip, port, maxsize=1)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
