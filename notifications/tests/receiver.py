"""A real HTTP server on 127.0.0.1 that plays a customer's webhook endpoint."""
from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"received": true}'
    headers: dict[str, str] = field(default_factory=dict)
    # Set to make the receiver hang until the test releases it.
    hold: threading.Event | None = None
    # Stream this many bytes of body instead of `body` (a huge answer).
    stream_bytes: int = 0
    # Send one byte every `trickle` seconds, `trickle_bytes` of them in all, from the status line
    # on (or only the body, after a prompt head, with `trickle_body`), then hang up.
    trickle: float = 0.0
    trickle_body: bool = False
    trickle_bytes: int = 12


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Plain http on 127.0.0.1, or https when given a server-side `ssl.SSLContext`."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.answers: list[Answer] = []
        self.received: list[Received] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/tollbooth"

    def answer(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def _next(self) -> Answer:
        return self.answers.pop(0) if self.answers else Answer()

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Received(self.path, dict(self.headers), body))
                answer = receiver._next()
                if answer.hold is not None:
                    answer.hold.wait(timeout=30)
                try:
                    self._trickle(answer) if answer.trickle else self._reply(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading, as it should for a huge body

            def _reply(self, answer: Answer) -> None:
                self.send_response(answer.status)
                length = answer.stream_bytes or len(answer.body)
                for name, value in {"Content-Length": str(length), **answer.headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                if not answer.stream_bytes:
                    self.wfile.write(answer.body)
                    return
                chunk = b"x" * 65536
                for _ in range(answer.stream_bytes // len(chunk)):
                    self.wfile.write(chunk)

            def _trickle(self, answer: Answer) -> None:
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                if answer.trickle_body:
                    self.wfile.write(head)
                    slow = b"x" * answer.trickle_bytes
                else:
                    slow = head[:answer.trickle_bytes]
                for byte in slow:
                    self.wfile.write(bytes([byte]))
                    time.sleep(answer.trickle)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        return Handler

    def __enter__(self) -> "Receiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
