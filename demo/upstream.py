"""The demo's sample upstream: the image analyzer as its own service, sold through the gateway.

    python -m demo.upstream            (the Procfile's `upstream` process; `make run` starts it)

A company's existing API, as Tollbooth sees it: it knows nothing of keys, plans or invoices.
The demo seed sells it as the product `vision` (/v1/vision/analyze), and the web workers no
longer decode images themselves: the CPU-heavy work runs in this process.

  POST /analyze   the raw image as the body (any Content-Type) -> the image product's JSON,
                  or 400/413 {"error", "code"} for input it refuses (passed back unbilled)
  GET  /health    200 {"ok": true}: what staff's "check upstream" calls (unsigned)

Every other request must carry a valid `Tollbooth-Signature` (the README's recipe, below) or is
refused with 401: traffic that went around Tollbooth is never served. The signing secret comes
from DEMO_UPSTREAM_SECRET or the file DEMO_UPSTREAM_SECRET_FILE (default var/demo_upstream_secret,
written by `manage.py demo_seed --upstream-secret-file`), re-read when the file changes, so a
rotation followed by a new seed needs no restart. Listens on 127.0.0.1:DEMO_UPSTREAM_PORT (8001).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from metering.products.errors import ProductInputError
from metering.products.image import DEFAULT_MAX_BYTES, image_analyze

ROOT = Path(__file__).resolve().parent.parent
SIGNATURE_TOLERANCE_SECONDS = 300
CHUNK = 64 * 1024


def signature_valid(*, secret: str, header: str, call: str, method: str, target: str, now: float | None = None) -> bool:
    """The README's recipe: Tollbooth-Signature is `t=<unix seconds>,v1=<hex>`, where v1 is
    HMAC-SHA256(secret, f"{t}.{Tollbooth-Call}.{method}.{request target}") and t is recent."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not (secret and call and t.isdigit() and v1):
        return False
    if abs((now if now is not None else time.time()) - int(t)) > SIGNATURE_TOLERANCE_SECONDS:
        return False  # an old signature replayed later
    expected = hmac.new(secret.encode(), f"{t}.{call}.{method}.{target}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)


class SecretSource:
    """The signing secret from the environment, or from a file re-read whenever it changes."""

    def __init__(self, *, value: str = "", path: Path | None = None) -> None:
        self.value, self.path = value, path
        self._stamp: float | None = None
        self._lock = threading.Lock()

    def get(self) -> str:
        if self.value or self.path is None:
            return self.value
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            return ""
        with self._lock:
            if stamp != self._stamp:
                self._cached = self.path.read_text().strip()
                self._stamp = stamp
            return self._cached


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TollboothDemoUpstream"
    # Headers and body go out as separate writes: with Nagle on, keep-alive calls wait ~40 ms.
    disable_nagle_algorithm = True
    secrets: SecretSource = SecretSource()
    max_bytes = DEFAULT_MAX_BYTES

    def log_message(self, format, *args):  # noqa: A002 - one short line per request, no headers
        sys.stderr.write("upstream: %s\n" % (format % args))

    def do_GET(self):
        self.route()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def route(self) -> None:
        if self.path == "/health" and self.command in ("GET", "HEAD"):
            return self.send_json(200, {"ok": True})
        if not signature_valid(secret=self.secrets.get(), header=self.headers.get("Tollbooth-Signature", ""),
                               call=self.headers.get("Tollbooth-Call", ""), method=self.command, target=self.path):
            self.close_connection = True  # the body, if any, is not read
            return self.send_json(401, {"error": "Missing or invalid Tollbooth-Signature: call this service "
                                                 "through Tollbooth.", "code": "signature_invalid"})
        if self.path != "/analyze":
            self.close_connection = True
            return self.send_json(404, {"error": "Not found. POST an image to /analyze.", "code": "not_found"})
        if self.command != "POST":
            self.close_connection = True
            return self.send_json(405, {"error": "POST an image to /analyze.", "code": "method_not_allowed"},
                                  {"Allow": "POST"})
        body = self.read_body()
        if body is None:
            self.close_connection = True
            return self.send_json(413, {"error": f"Image larger than {self.max_bytes / 1_048_576:g} MB",
                                        "code": "image_too_large"})
        try:
            result = image_analyze(data=body, max_bytes=self.max_bytes)
        except ProductInputError as exc:
            return self.send_json(exc.status, {"error": exc.message, "code": exc.code})
        self.send_json(200, result)

    def read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked), or None past max_bytes."""
        pieces, size = [], 0
        for piece in self.body_pieces():
            size += len(piece)
            if size > self.max_bytes:
                return None
            pieces.append(piece)
        return b"".join(pieces)

    def body_pieces(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                length = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield self.rfile.read(length)
                self.rfile.readline(8)
        left = int(self.headers.get("Content-Length") or 0)
        if left > self.max_bytes:
            yield b"\0" * (self.max_bytes + 1)  # refused without reading what it would cost
            return
        while left > 0:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                return
            left -= len(piece)
            yield piece

    def send_json(self, status: int, payload: dict, extra: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


def secret_source() -> SecretSource:
    if os.environ.get("DEMO_UPSTREAM_SECRET"):
        return SecretSource(value=os.environ["DEMO_UPSTREAM_SECRET"])
    path = Path(os.environ.get("DEMO_UPSTREAM_SECRET_FILE", "var/demo_upstream_secret"))
    return SecretSource(path=path if path.is_absolute() else ROOT / path)


def main() -> None:
    port = int(os.environ.get("DEMO_UPSTREAM_PORT", "8001"))
    Handler.secrets = secret_source()
    server = Server(("127.0.0.1", port), Handler)
    sys.stderr.write(f"upstream: image analyzer on http://127.0.0.1:{port} (POST /analyze, signed)\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
