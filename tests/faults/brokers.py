"""RabbitMQ for the fault tests: which broker to test against (the rule `make test` follows), a
set of queues of the test's own on it, and a TCP proxy between the app and the broker that the
test can cut.

Imported by a worker settings module, so nothing here reads Django's settings at import time.
"""
from __future__ import annotations

import socket
import threading
import uuid
from urllib.parse import urlsplit, urlunsplit

from kombu import Connection, Exchange, Queue

# Where a developer's or CI's RabbitMQ listens when CELERY_BROKER_URL names none.
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
PROBE_TIMEOUT = 3.0


def amqp_problem(url: str, *, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None if an AMQP broker at `url` lets us in within `timeout`, else what went wrong.

    A full handshake, not a port check: a port that accepts and never speaks AMQP, or refuses our
    credentials, is no broker to test against."""
    try:
        with Connection(url, connect_timeout=timeout, transport_options={"read_timeout": timeout}) as connection:
            connection.ensure_connection(max_retries=0)  # one try: a probe, not a client that waits
    except Exception as exc:  # noqa: BLE001 - any failure means "does not answer"; its text is reported
        return f"{type(exc).__name__}: {exc}" or type(exc).__name__
    return None


def rabbitmq_choice(environ: dict[str, str], *, default_url: str = DEFAULT_RABBITMQ_URL) -> tuple[str, str]:
    """("run", url), ("fail", why) or ("skip", why) for the RabbitMQ tests.

    CELERY_BROKER_URL naming an AMQP broker is a promise that one is there: it runs, or the tests
    fail. Naming none (or a Redis), the tests run where the usual local RabbitMQ answers and skip
    only where it does not, as on a fresh machine."""
    named = environ.get("CELERY_BROKER_URL", "")
    if urlsplit(named).scheme in AMQP_SCHEMES:
        problem = amqp_problem(named)
        if problem:
            return "fail", f"CELERY_BROKER_URL={_masked(named)} does not answer: {problem}"
        return "run", named
    problem = amqp_problem(default_url)
    if problem:
        return "skip", f"no RabbitMQ named (CELERY_BROKER_URL) and none at {_masked(default_url)}: {problem}"
    return "run", default_url


def _masked(url: str) -> str:
    return Connection(url).as_uri()  # the password as ***


def queues_of_run(suffix: str, queues: list[Queue], routes: dict, default_queue: str) -> dict:
    """Celery settings (lower-case names) that put every queue under a name of this run's own:
    the same durable queues on the default exchange, so two test runs on one broker never take
    each other's messages."""
    def renamed(name: str) -> str:
        return f"{name}-{suffix}"

    return {
        "task_queues": [Queue(renamed(q.name), Exchange(""), routing_key=renamed(q.name)) for q in queues],
        "task_routes": {pattern: {**route, "queue": renamed(route["queue"])} for pattern, route in routes.items()},
        "task_default_queue": renamed(default_queue),
    }


def run_suffix() -> str:
    return f"tbtest-{uuid.uuid4().hex[:10]}"


def queues_delete(url: str, names: list[str]) -> None:
    with Connection(url, connect_timeout=PROBE_TIMEOUT) as connection:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)


def queue_depth(url: str, name: str) -> int:
    """Messages waiting in queue `name` (declared if missing, as a worker would)."""
    with Connection(url, connect_timeout=PROBE_TIMEOUT) as connection:
        return Queue(name, Exchange(""), routing_key=name)(connection.channel()).queue_declare().message_count


class CuttableProxy:
    """A TCP proxy on loopback in front of `url`'s broker. `cut("drop")` closes every open
    connection and then accepts and at once closes new ones (a broker restarting, a network
    reset); `cut("hang")` accepts and never answers (a stalled broker or network); `restore()`
    forwards again."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        port = self.listener.getsockname()[1]
        netloc = parts.netloc.rsplit("@", 1)
        self.url = urlunsplit(parts._replace(
            netloc=(f"{netloc[0]}@" if len(netloc) == 2 else "") + f"127.0.0.1:{port}"))
        self.mode = "forward"
        self.accepted = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "CuttableProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.close()
        self._close_all()

    def cut(self, mode: str = "drop") -> None:
        assert mode in ("drop", "hang")
        self.mode = mode
        self._close_all()

    def restore(self) -> None:
        self.mode = "forward"

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._open, self._held = self._open + self._held, [], []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            if self.mode == "drop":
                client.close()
            elif self.mode == "hang":
                with self._lock:
                    self._held.append(client)
            else:
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                with self._lock:
                    self._open += [client, upstream]
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

