"""The one Redis client of the project, the errors that mean "Redis is not there", and this
process's view of Redis's health: one state machine every app shares (README "Architecture").

Every app reaches Redis through `redis_client()` and treats `REDIS_UNAVAILABLE` as an outage
(not a bug). The state of the outage lives here and nowhere else:

          mark_down()                                   REDIS_RETRY_SECONDS pass
  +----+  (a command failed, or    +------+  -------------------------------->  +------------+
  | UP | ------------------------> | DOWN |                                     | RECOVERING |
  +----+   the server restarted)   +------+  <--------------------------------  +------------+
    ^                                          mark_down() (a callback, or any         |
    |                                          caller, met Redis gone again)          |
    +---------------------------------------------------------------------------------+
       redis_recovered(): every recovery callback ran and no thread failed meanwhile
       (one did: stay RECOVERING and run them all again at the next contact)

  A process about to exit calls redis_recovered() from DOWN too: it gets no later contact.
  redis_state_reset() (tests) goes back to UP from anywhere, forgetting notes and run ids.

- UP: Redis is used; nothing is owed to it.
- DOWN: the breaker is open. Callers skip Redis (`redis_is_marked_down()`), so each request
  does not pay a connect timeout; metering counts in Postgres (README "The metered API").
- RECOVERING: Redis may be back, but this process saw it fail and may hold what Redis missed.
  `redis_recovered()` runs the recovery callbacks (`on_recovery`) once, at the first contact,
  before the caller trusts Redis: they drop caches built from stale data and publish what could
  not be published.
- In DOWN and RECOVERING ("outage seen"), work owed to Redis is kept for the recovery: as notes
  (`outage_note`, taken by a callback with `outage_notes_take`) or through
  `redis_defer_to_recovery`. A recovery running meanwhile either collects it or has finished
  first: nothing falls between.

A process also notices a restart it never saw fail: every new connection asks the server's run
id, and a new one is an outage (what the server wrote since its last fsync, and any change whose
publish failed, may be missing), so the first connection after a restart fails on purpose.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Hashable, Iterable

import redis
from django.conf import settings
from django_redis import get_redis_connection

logger = logging.getLogger(__name__)

# Errors that mean Redis cannot answer now (down, unreachable, slow, still loading its data
# after a restart), as opposed to a bug in a command or a script. In cluster mode also: the
# node serving a key's slot is down or failing over (CLUSTERDOWN, MASTERDOWN, TRYAGAIN, no
# node serving the slot, or redirections that never settle).
REDIS_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError,  # MasterDownError too
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ClusterError,
)


class RedisRestartedError(redis.exceptions.ConnectionError):
    """The first connection to a restarted server fails on purpose (module docstring). A class
    of its own: a cluster client retries a plain ConnectionError at once, which would hide it."""


class RedisHealth:
    """UP, DOWN or RECOVERING (module docstring), with what this process owes Redis."""

    def __init__(self) -> None:
        self._down_until = 0.0
        self._outage_seen = False
        self._failures = 0  # raised by every mark_down: a recovery that overlapped one is not final
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.RLock()  # a callback may defer more work to the recovery it is in
        self._notes: dict[str, set] = {}
        self._notes_lock = threading.Lock()  # not the recovery's: noting never waits for one
        self.run_ids: dict[tuple, str] = {}  # per server this process reached; new one: restarted

    def is_marked_down(self) -> bool:
        return time.monotonic() < self._down_until

    def outage_seen(self) -> bool:
        """True from a failure until this process next reached Redis (and ran its recovery)."""
        return self._outage_seen

    def mark_down(self) -> None:
        """Skip Redis for a moment: one failed connect per interval, not one per request. Takes
        no lock: a thread failing while another runs the recovery must not wait for it."""
        self._down_until = time.monotonic() + settings.REDIS_RETRY_SECONDS
        self._outage_seen = True
        self._failures += 1

    def mark_up(self) -> None:
        """Redis answered: run the recovery callbacks once if this process had seen an outage.

        A callback that meets Redis gone again marks it down and leaves the outage open, so the
        callbacks run again at the next successful contact."""
        self._down_until = 0.0
        if not self._outage_seen:
            return
        with self._lock:
            if not self._outage_seen:
                return
            failures = self._failures
            try:
                for callback in self._callbacks:
                    callback()
            except REDIS_UNAVAILABLE:
                self.mark_down()
                return
            if failures != self._failures:
                return  # another thread met Redis gone meanwhile: recover again next time
            self._outage_seen = False
        logger.info("redis is reachable again")

    def recovered(self) -> bool:
        """True unless this process saw an outage and Redis is still away for its recovery.
        Callers check the breaker first; a process about to exit calls it regardless."""
        if self._outage_seen:
            self.mark_up()
        return not self._outage_seen

    def defer_to_recovery(self, keep: Callable[[], None]) -> bool:
        """If an outage is seen, run `keep` (which stores work for a recovery callback) and
        return True; otherwise return False and let the caller act now."""
        if not self._outage_seen:
            return False
        with self._lock:
            if not self._outage_seen:
                return False
            keep()
            return True

    def on_recovery(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Register `callback` to run when this process reaches Redis after an outage."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def note(self, kind: str, items: Iterable[Hashable]) -> None:
        """Remember `items` under `kind` until a recovery callback takes them."""
        with self._notes_lock:
            self._notes.setdefault(kind, set()).update(items)

    def note_first(self, kind: str, item: Hashable) -> bool:
        """Note `item`; True if it was not noted yet (the first time since the last take)."""
        with self._notes_lock:
            noted = self._notes.setdefault(kind, set())
            if item in noted:
                return False
            noted.add(item)
            return True

    def notes_take(self, kind: str) -> set:
        with self._notes_lock:
            return self._notes.pop(kind, set())

    def reset(self) -> None:
        """Back to UP without running the recovery, forgetting every note (tests)."""
        self._down_until = 0.0
        self._outage_seen = False
        with self._notes_lock:
            self._notes.clear()
        self.run_ids.clear()


health = RedisHealth()

# The names every app uses.
redis_is_marked_down = health.is_marked_down
redis_outage_seen = health.outage_seen
redis_mark_down = health.mark_down
redis_mark_up = health.mark_up
redis_recovered = health.recovered
redis_defer_to_recovery = health.defer_to_recovery
on_recovery = health.on_recovery
outage_note = health.note
outage_note_first = health.note_first
outage_notes_take = health.notes_take
redis_state_reset = health.reset


def redis_client() -> redis.Redis | redis.cluster.RedisCluster:
    """The shared client; in cluster mode (REDIS_CLUSTER) a RedisCluster (core.redis_cluster)."""
    client = get_redis_connection("default")
    if settings.REDIS_CLUSTER:
        return client  # the hook is on every node's connections already
    connection_kwargs = client.connection_pool.connection_kwargs
    if connection_kwargs.get("redis_connect_func") is not _connected:
        connection_kwargs["redis_connect_func"] = _connected  # for the pool's new connections
    return client


def _connected(conn: redis.connection.AbstractConnection) -> None:
    """Every new connection asks the server's run id. A pool quietly replaces connections a
    restarted Redis dropped, so a process that made no call during a short outage would not
    notice it otherwise; the first connection after a restart fails (module docstring)."""
    conn.on_connect()
    run_id_check(conn)


def run_id_check(conn: redis.connection.AbstractConnection) -> None:
    """The restart check of `_connected` on a connection already set up: a cluster client runs
    its own setup first, then this, per node (run ids are kept per host and port)."""
    try:
        conn.send_command("INFO", "server")
        info = conn.read_response()
    except redis.exceptions.ResponseError:
        return  # INFO renamed or refused (some hosted Redis): no restart detection
    text = info.decode() if isinstance(info, bytes) else str(info)
    run_id = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("run_id:")), "")
    server = (getattr(conn, "host", None), getattr(conn, "port", None), getattr(conn, "path", None))
    previous, health.run_ids[server] = health.run_ids.get(server), run_id
    if previous is not None and previous != run_id:
        redis_mark_down()
        raise RedisRestartedError("Redis restarted since this process last reached it")
