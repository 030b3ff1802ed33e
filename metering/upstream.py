"""The gateway's client side (README "Sell your own API"): where a call goes, what it carries, and sending it.

The pure half decides the upstream request from the client's: the request target (path and
query kept, never able to leave the product's base URL), the headers both ways (hop-by-hop
headers and every credential dropped, X-Forwarded-* and the Tollbooth-* headers set) and the
signature. The other half sends it with urllib3: one pool manager per process, keep-alive
connections per upstream, the body streamed both ways, redirects returned and never followed.

Decisions an upstream relies on (the README's recipe repeats them):
- The host never comes from the client: a call is sent on a connection pool opened for the
  product's base URL, and only a path-and-query travels from the client to the request line.
- The path is checked on its decoded form and refused (400 `bad_path`) when it holds `.` or
  `..` segments (also `..;x`, Tomcat's form), an empty segment (`//host`), a backslash, a
  control character, or an escape still encoded after decoding (`%252e`, `%252f`, `%255c`,
  overlong `%c0`/`%c1`). `%2f` is decoded by the web server like any escape, so `a%2fb` is the
  path `a/b`, inside the base. `@` and `:` are ordinary path characters there.
- Tollbooth-Signature is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.call.method.target")>`
  where target is the request target exactly as on the request line the upstream receives:
  path and query, percent-encoded, e.g. `/api/items/42?color=red` (Go's `r.RequestURI`,
  Node's `req.url`, WSGI's `RAW_URI`/`REQUEST_URI`, Python http.server's `self.path`).
- Set-Cookie from an upstream is dropped: the gateway answers on Tollbooth's own origin, where
  an upstream's cookie could land beside (or replace) the portal's session.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote, unquote_plus, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError, ProtocolError, TimeoutError as Urllib3Timeout
from urllib3.util import SKIP_HEADER

CHUNK_BYTES = 64 * 1024
# Idle keep-alive connections kept per upstream host and process (more may be open at once).
POOL_MAXSIZE = int(os.environ.get("GATEWAY_POOL_MAXSIZE", "256"))
POOL_HOSTS = 64

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade",
})
# What a client sends for Tollbooth, never for the upstream.
CREDENTIALS = frozenset({"authorization", "x-api-key", "cookie", "cookie2"})
# Set by the gateway (or by the HTTP client for this hop), so a client's copy is dropped.
SET_HERE = frozenset({
    "host", "content-length", "expect", "forwarded", "x-forwarded-for", "x-forwarded-proto",
    "x-forwarded-host", "x-forwarded-port", "x-real-ip",
})
RESPONSE_DROPPED = frozenset({"set-cookie", "set-cookie2"})
# The gateway's own answer headers: an upstream's copy would contradict them.
METERING_HEADER_PREFIXES = ("x-ratelimit-", "x-quota-", "tollbooth-")
QUERY_CREDENTIALS = frozenset({"api_key"})

# An escape that survives one decoding: the client encoded it twice for a server that decodes twice.
_STILL_ENCODED = re.compile(r"%(?:2e|2f|5c|00|c0|c1)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PATH_SAFE = "/!$&'()*+,;=:@~"
# Printable ASCII but space and '#': kept as the client wrote it (its escapes included).
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7f) if chr(c) not in "#")
_IDEMPOTENT_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class BadPath(ValueError):
    """The client's path could leave the base URL, or is not one an upstream can be sent."""


class BodyTooLarge(Exception):
    """The request body passed the product's limit while it was being streamed."""


class BodyIncomplete(Exception):
    """The client announced a Content-Length and stopped sending before it."""


class UpstreamUnavailable(Exception):
    """Refused, reset, or closed without an answer: 502 upstream_unavailable."""


class UpstreamTimeout(Exception):
    """No answer within the product's timeout: 504 upstream_timeout."""


# --- the request target ---


@dataclass(frozen=True, slots=True)
class Base:
    scheme: str
    host: str
    port: int
    path: str
    query: str
    authorization: str  # Basic credentials written in the base URL, sent on every call


@lru_cache(maxsize=256)
def base_parse(upstream_url: str) -> Base:
    parts = urlsplit(upstream_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) base URL: {upstream_url!r}")
    authorization = ""
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return Base(scheme=parts.scheme, host=parts.hostname, port=parts.port or (443 if parts.scheme == "https" else 80),
                path=parts.path, query=parts.query, authorization=authorization)


def path_check(rest: str) -> str:
    """The client's path below /v1/<slug> (decoded, "" or starting with "/"), percent-encoded
    for the request line; raises BadPath for anything that could step out of the base."""
    if rest and not rest.startswith("/"):
        raise BadPath("The path must start with /")
    if "\\" in rest or _CONTROL.search(rest):
        raise BadPath("Backslashes and control characters are not allowed in the path")
    if _STILL_ENCODED.search(rest):
        raise BadPath("Encoded dots, slashes or backslashes are not allowed in the path")
    segments = rest.split("/")[1:]
    for index, segment in enumerate(segments):
        if segment.split(";", 1)[0].strip() in (".", ".."):
            raise BadPath("Dot segments (. and ..) are not allowed in the path")
        if segment == "" and index < len(segments) - 1:
            raise BadPath("Empty path segments (//) are not allowed")
    return quote(rest, safe=_PATH_SAFE)


def query_forwarded(query: str) -> str:
    """The client's query string as it sent it, less any api_key parameter."""
    if not query:
        return ""
    try:
        raw = query.encode("latin-1")  # WSGI carries the raw bytes as latin-1 text
    except UnicodeEncodeError:
        raw = query.encode()
    kept = [part for part in raw.split(b"&")
            if unquote_plus(part.split(b"=", 1)[0].decode("latin-1")).strip().lower() not in QUERY_CREDENTIALS]
    return quote(b"&".join(kept), safe=_QUERY_SAFE)


def target_build(base: Base, rest: str, query: str) -> str:
    """The request target sent upstream: the base path, then the client's path and query."""
    path = base.path.rstrip("/") + path_check(rest) if rest else base.path
    query = "&".join(q for q in (base.query, query_forwarded(query)) if q)
    return (path or "/") + (f"?{query}" if query else "")


# --- headers ---


def signature(*, secret: str, timestamp: int, call: str, method: str, target: str) -> str:
    message = f"{timestamp}.{call}.{method}.{target}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def call_id_new() -> str:
    return "call_" + secrets.token_hex(12)


def header_text(value: str) -> str:
    """A header value any HTTP stack accepts: printable ASCII kept, the rest percent-encoded."""
    return quote(value, safe="".join(chr(c) for c in range(0x20, 0x7f)))


def client_headers(meta: Mapping[str, str]) -> dict[str, str]:
    """The client's request headers (WSGI environ) that may travel on to the upstream."""
    named_hops = {name.strip().lower() for name in meta.get("HTTP_CONNECTION", "").split(",")}
    kept: dict[str, str] = {}
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
        elif key == "CONTENT_TYPE" and value:
            name = "Content-Type"
        else:
            continue
        lower = name.lower()
        if (lower in HOP_BY_HOP or lower in CREDENTIALS or lower in SET_HERE or lower in named_hops
                or lower.startswith("tollbooth-")):
            continue
        kept[name] = value
    return kept


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the gateway forwards for, as the upstream is told."""

    customer: str
    plan: str
    remote_addr: str
    proto: str
    host: str


def request_headers(
    *, meta: Mapping[str, str], caller: Caller, base: Base, secret: str, call: str, method: str, target: str,
    content_length: int | None, now: float | None = None,
) -> dict[str, str]:
    headers = client_headers(meta)
    if "User-Agent" not in headers:
        headers["User-Agent"] = SKIP_HEADER  # not urllib3's own
    if base.authorization:
        headers["Authorization"] = base.authorization
    if content_length is not None:
        headers["Content-Length"] = str(content_length)
    headers.update({
        "X-Forwarded-For": caller.remote_addr,
        "X-Forwarded-Proto": caller.proto,
        "X-Forwarded-Host": caller.host,
        "Tollbooth-Customer": caller.customer,
        "Tollbooth-Plan": header_text(caller.plan),
        "Tollbooth-Call": call,
    })
    if secret:
        headers["Tollbooth-Signature"] = signature(
            secret=secret, timestamp=int(now if now is not None else time.time()), call=call, method=method,
            target=target)
    return headers


def response_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """The upstream's answer headers that reach the client (the gateway adds its metering headers)."""
    named_hops = {name.strip().lower() for name in upstream.get("Connection", "").split(",")}
    kept: dict[str, str] = {}
    for name in upstream:
        lower = name.lower()
        if (lower in HOP_BY_HOP or lower in named_hops or lower in RESPONSE_DROPPED
                or lower.startswith(METERING_HEADER_PREFIXES)):
            continue
        value = upstream[name]  # repeated headers come joined with ", "
        kept[name] = " ".join(value.split()) if ("\n" in value or "\r" in value) else value
    return kept


# --- sending ---

_manager: urllib3.PoolManager | None = None
_manager_lock = threading.Lock()


def _pool_manager() -> urllib3.PoolManager:
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                # block=False: a burst beyond maxsize opens extra connections instead of queueing.
                _manager = urllib3.PoolManager(num_pools=POOL_HOSTS, maxsize=POOL_MAXSIZE, block=False)
    return _manager


def _manager_reset_after_fork() -> None:
    global _manager, _manager_lock
    _manager, _manager_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_manager_reset_after_fork)


def upstream_send(
    *, base: Base, method: str, target: str, headers: dict[str, str], body: Iterable[bytes] | None,
    timeout_seconds: float,
) -> urllib3.BaseHTTPResponse:
    """Send one call and return once the upstream's status and headers are in; the body is
    read later, in pieces (UpstreamResponse). Redirects are answers like any other."""
    pool = _pool_manager().connection_from_host(base.host, base.port, base.scheme)
    timeout = urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds)
    # A kept-alive connection the upstream closed just as it was reused fails with no answer
    # at all; a call that had no body and changes nothing is sent once more on a new one.
    attempts = 2 if body is None and method in _IDEMPOTENT_BODYLESS else 1
    for attempt in range(attempts):
        try:
            return pool.urlopen(
                method, target, body=body, headers=headers, retries=False, redirect=False, timeout=timeout,
                preload_content=False, decode_content=False, assert_same_host=False, release_conn=False,
            )
        except NewConnectionError as error:  # refused or unresolvable (urllib3 files it under timeouts)
            raise UpstreamUnavailable(str(error)) from error
        except Urllib3Timeout as error:
            raise UpstreamTimeout(str(error)) from error
        except ProtocolError as error:
            if attempt + 1 == attempts:
                raise UpstreamUnavailable(str(error)) from error
        except (Urllib3Error, OSError) as error:
            raise UpstreamUnavailable(str(error)) from error
    raise AssertionError("unreachable")


class UpstreamResponse:
    """The upstream's body as an iterator of pieces, for a StreamingHttpResponse: nothing is
    held beyond one piece. prime() reads the first piece before the answer starts, so an
    upstream that fails right after its headers still gets a 502/504 answer; a failure later
    raises, and the web server drops the connection: the client sees a cut answer, never a
    complete-looking short one.

    `on_close(broke)` runs once the web server is done with the answer (WSGI's close()):
    `broke` is True when the upstream failed midway, False when the answer went out whole or
    the client left before the end."""

    def __init__(self, response: urllib3.BaseHTTPResponse):
        self.response = response
        self.on_close: Callable[[bool], None] | None = None
        self.finished = self.broke = False
        self._pieces = response.stream(CHUNK_BYTES, decode_content=False)
        self._first = b""

    def prime(self) -> None:
        try:
            self._first = next(self._pieces, b"")
        except Urllib3Timeout as error:
            raise UpstreamTimeout(str(error)) from error
        except (Urllib3Error, OSError) as error:
            raise UpstreamUnavailable(str(error)) from error

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self._first:
                yield self._first
            yield from self._pieces
        except (Urllib3Error, OSError) as error:
            self.broke = True
            raise UpstreamUnavailable(f"the upstream's answer broke off: {error}") from error
        self.finished = True

    def close(self) -> None:
        try:
            if not self.finished:
                # Left unread (client gone, or failed): the connection cannot be reused.
                self.response.close()
            self.response.release_conn()
        finally:
            on_close, self.on_close = self.on_close, None
            if on_close is not None:
                on_close(self.broke)


def body_pieces(stream, *, length: int | None, limit: int) -> Iterator[bytes]:
    """The client's request body in pieces, from the WSGI input: exactly `length` bytes when the
    client gave a Content-Length, else (chunked) until the end, cut off past `limit` bytes."""
    sent = 0
    while length is None or sent < length:
        piece = stream.read(CHUNK_BYTES if length is None else min(CHUNK_BYTES, length - sent))
        if not piece:
            if length is not None:
                raise BodyIncomplete()
            return
        sent += len(piece)
        if sent > limit:
            raise BodyTooLarge()
        yield piece
