"""A real upstream HTTP service for the gateway's tests: `python tests/upstream_server.py PORT [SECRET]`.

Everything under /api is the product's base URL; anything else counts as an escape from it
(GET /_stats reports those hits, so a test can prove no path left the base). Endpoints:

  /api/echo[/...]        200 JSON: method, target (raw request target), path, query, headers, body size/sha256
  /api/status/<code>     that status; ?location=... adds a Location header (redirects)
  /api/sleep/<ms>        sleeps, then 200 (/_stats keeps the most sleeping at once: sleep_peak)
  /api/stream/<bytes>    that many bytes in 64 KiB writes; ?chunked=1 sends no Content-Length, ?cut=N
                         breaks the answer off after N bytes
  /api/upload            reads the body in 64 KiB pieces (Content-Length or chunked), answers its size and sha256
  /api/verify            200 when Tollbooth-Signature is valid for SECRET (and fresh), else 401
  /api/drop              closes the connection without answering; /api/reset answers with a TCP reset
  /api/headers           200 with hop-by-hop, Set-Cookie and Tollbooth-looking headers, for response hygiene
  /_stats                JSON counts of requests by endpoint and of hits outside /api; DELETE clears them

Stdlib only, one thread per connection, keep-alive (HTTP/1.1): the tests need many calls in flight.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BASE = "/api"
CHUNK = 64 * 1024
BLOCK = bytes(range(256)) * (CHUNK // 256)
SIGNATURE_TOLERANCE_SECONDS = 300

stats: Counter = Counter()
stats_lock = threading.Lock()
# /api/sleep calls being served right now, and the most at once ("sleep_peak" in /_stats): what
# shows how many calls the gateway held in flight, without timing anything.
sleeping = 0
secret = ""


def count(name: str) -> None:
    with stats_lock:
        stats[name] += 1


def signature_valid(headers, method: str, target: str, now: float | None = None) -> bool:
    """The recipe the README gives an upstream: recompute v1 over t.call.method.target."""
    parts = dict(p.split("=", 1) for p in headers.get("Tollbooth-Signature", "").split(",") if "=" in p)
    call = headers.get("Tollbooth-Call", "")
    if not secret or "t" not in parts or "v1" not in parts or not call or not parts["t"].isdigit():
        return False
    if abs((now or time.time()) - int(parts["t"])) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    message = f"{parts['t']}.{call}.{method}.{target}".encode()
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, the body would
    # wait for the client's delayed ACK of the headers (40 ms on Linux) on every kept-alive call.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the tests read /_stats, not a log
        pass

    def do_GET(self):
        self.route()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def route(self):
        target = self.path
        path = urlsplit(target).path
        if path == "/_stats":
            return self.stats()
        if path != BASE and not path.startswith(BASE + "/"):
            count("outside")
            self.drain()
            return self.send_json(200, {"outside": True, "target": target})
        name, _, arg = path[len(BASE) + 1:].partition("/")
        count(name or "root")
        handler = getattr(self, f"ep_{name}", None)
        if handler is None:
            self.drain()
            return self.send_json(404, {"error": "no such endpoint"})
        return handler(arg, parse_qs(urlsplit(target).query))

    # --- endpoints ---

    def ep_echo(self, arg, query):
        size, digest, head = self.drain(keep=1024)
        self.send_json(200, {
            "method": self.command, "target": self.path, "path": urlsplit(self.path).path,
            "query": urlsplit(self.path).query, "headers": [[k, v] for k, v in self.headers.items()],
            "body_bytes": size, "body_sha256": digest, "body_head": head.decode("latin-1"),
            "signature_valid": signature_valid(self.headers, self.command, self.path),
        })

    def ep_status(self, arg, query):
        self.drain()
        code = int(arg or 200)
        extra = {"Location": query["location"][0]} if "location" in query else {}
        self.send_json(code, {"status": code}, extra)

    def ep_sleep(self, arg, query):
        global sleeping
        self.drain()
        with stats_lock:
            sleeping += 1
            stats["sleep_peak"] = max(stats["sleep_peak"], sleeping)
        try:
            time.sleep(int(arg or 0) / 1000)
        finally:
            with stats_lock:
                sleeping -= 1
        self.send_json(200, {"slept_ms": int(arg or 0)})

    def ep_stream(self, arg, query):
        self.drain()
        total = int(arg)
        chunked = "chunked" in query
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(total))
        self.end_headers()
        if self.command == "HEAD":
            return
        left = total
        cut = int(query.get("cut", [total])[0])  # break the answer off after this many bytes
        while left:
            piece = BLOCK[:min(CHUNK, left, cut - (total - left))]
            if not piece:
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            left -= len(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def ep_upload(self, arg, query):
        size, digest, _ = self.drain()
        self.send_json(200, {"body_bytes": size, "body_sha256": digest,
                             "chunked": "chunked" in self.headers.get("Transfer-Encoding", "")})

    def ep_verify(self, arg, query):
        self.drain()
        valid = signature_valid(self.headers, self.command, self.path)
        self.send_json(200 if valid else 401, {"valid": valid})

    def ep_drop(self, arg, query):
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def ep_reset(self, arg, query):
        self.close_connection = True
        # SO_LINGER 0: close() sends RST instead of FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def ep_headers(self, arg, query):
        self.drain()
        body = b'{"ok": true}'
        self.send_response(200)
        for name, value in [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Set-Cookie", "sessionid=upstream; Path=/"), ("Connection", "X-Private-Hop"),
            ("X-Private-Hop", "secret"), ("Keep-Alive", "timeout=5"), ("Proxy-Authenticate", "Basic"),
            ("Upgrade", "h2c"), ("X-RateLimit-Limit", "999999"), ("X-Upstream", "kept"),
        ]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def stats(self):
        self.drain()
        if self.command == "DELETE":
            with stats_lock:
                stats.clear()
        with stats_lock:
            snapshot = dict(stats)
        self.send_json(200, snapshot)

    # --- plumbing ---

    def drain(self, keep: int = 0) -> tuple[int, str, bytes]:
        """Read the request body in pieces (never all of it at once): size, sha256, first `keep` bytes."""
        digest, size, head = hashlib.sha256(), 0, b""
        for piece in self.body_pieces():
            digest.update(piece)
            size += len(piece)
            if len(head) < keep:
                head += piece[:keep - len(head)]
        return size, digest.hexdigest(), head

    def body_pieces(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                left = length
                while left:
                    piece = self.rfile.read(min(CHUNK, left))
                    if not piece:
                        return
                    left -= len(piece)
                    yield piece
                self.rfile.readline(8)
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                return
            left -= len(piece)
            yield piece

    def send_json(self, status: int, payload: dict, extra: dict | None = None) -> None:
        # 204 and 304 answers have no body at all (nor its length).
        body = b"" if status in (204, 304) else json.dumps(payload).encode()
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)


class Server(ThreadingHTTPServer):
    # Hundreds of connections arrive at once in the concurrency tests: a short accept queue would
    # drop SYNs and add a one-second retransmit to some of them.
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Tollbooth closing a connection midway (a cut upload, a client gone) is expected here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main() -> None:
    global secret
    port = int(sys.argv[1])
    secret = sys.argv[2] if len(sys.argv) > 2 else ""
    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
