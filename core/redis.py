"""The one Redis client of the project, the errors that mean "Redis is not there", and this
process's view of Redis's health: one state machine per Redis server, shared by every app
(README "Architecture"). On a single Redis that is one breaker for the process; on a Redis
Cluster (REDIS_CLUSTER) one per primary (see "Per-node breakers" below).

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
  A process that owes a recovery and gets no call is not left RECOVERING: its commit thread
  calls redis_recover_owed() once the retry interval is over (a PING, then the callbacks).
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

Per-node breakers (cluster mode). A dead primary is an outage of its slots only: its customers
fail open, the others stay in Redis. So each primary ("host:port") has a breaker of its own,
made at first use, and every function above takes an optional `key`, a Redis key (a customer's
`tb:{42}:...`, a form limit's key): the breaker used is that of the primary serving the key's
slot, read from the cluster client's slot map (no network I/O; a slot the map lost keeps the
last primary seen serving it). On a single Redis the key is ignored: one breaker, as ever.
- Callbacks are registered once and run for any breaker. While they run, `redis_recovering()`
  is the recovering breaker in that thread, and notes taken or added without a key are its
  own: node N's recovery republishes N's customers only, so it never touches a dead node, and
  one dead node never holds back another's recovery.
- Notes are per breaker: noting with a key notes for the key's primary.
- Without a key in cluster mode (a call that cannot name one): `redis_is_marked_down()` and
  `redis_outage_seen()` ask whether any primary's breaker is open / owes a recovery;
  `redis_mark_down(error=...)` opens the breaker of the node the error's connection names, else
  every known primary's; `redis_recovered()` and `redis_mark_up()` recover every breaker (a
  process about to exit); `outage_notes_take()` outside a recovery takes every breaker's notes.
- A breaker that owes a recovery and whose slots another primary took (a replica took over) is
  reached through those keys no more: its recovery runs at the next successful contact with any
  primary, and republishes to the keys' new primary.
"""
from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Callable, Hashable, Iterable

import redis
from django.conf import settings
from django_redis import get_redis_connection

from . import redis_cluster

logger = logging.getLogger(__name__)

# Errors that mean Redis cannot answer now (down, unreachable, slow, still loading its data
# after a restart), as opposed to a bug in a command or a script. In cluster mode also: the
# node serving a key's slot is down or failing over (CLUSTERDOWN, MASTERDOWN, TRYAGAIN, no
# node serving the slot, or redirections that never settle), or no node can be reached at all
# (the client's topology refresh found none; its base class, RedisClusterException, also means
# bugs such as a cross-slot command, so it is not listed).
REDIS_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError,  # MasterDownError too
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ClusterError,
    redis.exceptions.RedisClusterUnreachableError,
)


class RedisRestartedError(redis.exceptions.ConnectionError):
    """The first connection to a restarted server fails on purpose (module docstring). A class
    of its own: a cluster client retries a plain ConnectionError at once, which would hide it."""


class RedisHealth:
    """UP, DOWN or RECOVERING (module docstring), with what this process owes Redis: the one
    Redis server, or (cluster mode) one primary, named by `name`."""

    def __init__(self, name: str = "redis", callbacks: list[Callable[[], None]] | None = None) -> None:
        self.name = name
        self._down_until = 0.0
        self._outage_seen = False
        self._failures = 0  # raised by every mark_down: a recovery that overlapped one is not final
        # Shared by every breaker of the process: a callback registered once runs for any of them.
        self._callbacks: list[Callable[[], None]] = [] if callbacks is None else callbacks
        self._lock = threading.RLock()  # a callback may defer more work to the recovery it is in
        self._notes: dict[str, set] = {}
        self._notes_lock = threading.Lock()  # not the recovery's: noting never waits for one

    def __repr__(self) -> str:
        return f"<RedisHealth {self.name}>"

    def is_marked_down(self) -> bool:
        return time.monotonic() < self._down_until

    def retry_at(self) -> float:
        """When the breaker lets Redis be tried again (time.monotonic(); in the past: now)."""
        return self._down_until

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
        callbacks run again at the next successful contact. While they run, `recovering()` is
        this breaker in this thread: what they take and note without a key is this node's."""
        self._down_until = 0.0
        if not self._outage_seen:
            return
        with self._lock:
            if not self._outage_seen:
                return
            failures = self._failures
            token = _recovering.set(self)
            try:
                for callback in self._callbacks:
                    callback()
            except REDIS_UNAVAILABLE:
                self.mark_down()
                return
            finally:
                _recovering.reset(token)
            if failures != self._failures:
                return  # another thread met Redis gone meanwhile: recover again next time
            self._outage_seen = False
        logger.info("redis is reachable again (%s)", self.name)

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


# The breaker whose recovery callbacks run in this thread, if any (RedisHealth.mark_up).
_recovering: contextvars.ContextVar[RedisHealth | None] = contextvars.ContextVar("redis_recovering", default=None)

_callbacks: list[Callable[[], None]] = []
health = RedisHealth("redis", _callbacks)  # single Redis: the one breaker of the process
_nodes: dict[str, RedisHealth] = {}  # cluster mode: one per primary, by "host:port", made on first use
_nodes_lock = threading.Lock()
_slot_owners: dict[int, str] = {}  # the last primary seen serving a slot: named even once it is gone
_orphans: set[RedisHealth] = set()  # breakers owing a recovery whose slots another primary took
_run_ids: dict[tuple, str] = {}  # per server this process reached; a new one: it restarted
UNRESOLVED = "unresolved"  # cluster mode, before the client has a slot map


_cluster = redis_cluster.cluster_enabled


def _node(name: str) -> RedisHealth:
    breaker = _nodes.get(name)
    if breaker is None:
        with _nodes_lock:
            breaker = _nodes.setdefault(name, RedisHealth(name, _callbacks))
    return breaker


def redis_node_name(key: str) -> str:
    """The "host:port" of the primary serving `key`'s slot, from the cluster client's slot map
    (no network I/O; the last owner seen if the map lost the slot)."""
    client = redis_cluster.cluster_client_if_made()
    if client is None:
        return UNRESOLVED
    slot = client.keyslot(key)
    try:
        name = client.nodes_manager.get_node_from_slot(slot).name
    except redis.exceptions.SlotNotCoveredError:
        return _slot_owners.get(slot, UNRESOLVED)
    previous = _slot_owners.get(slot)
    if previous != name:
        _slot_owners[slot] = name
        moved_from = _nodes.get(previous) if previous is not None else None
        if moved_from is not None and moved_from.outage_seen():
            _orphans.add(moved_from)  # a replica took over, or the slot moved (redis_recovered)
    return name


def redis_breaker(key: str | None = None) -> RedisHealth | None:
    """The breaker of `key` (a Redis key): the process's one breaker on a single Redis, the
    breaker of the key's primary in cluster mode; None in cluster mode without a key."""
    if not _cluster():
        return health
    if key is None:
        return None
    return _node(redis_node_name(key))


def _breakers() -> list[RedisHealth]:
    return [health] if not _cluster() else list(_nodes.values())


def redis_breakers_down() -> list[RedisHealth]:
    """The breakers open now (cluster mode: the primaries this process is skipping)."""
    return [breaker for breaker in _breakers() if breaker.is_marked_down()]


def redis_is_marked_down(key: str | None = None) -> bool:
    """Is the breaker of `key` open? Without a key in cluster mode: is any primary's?"""
    breaker = redis_breaker(key)
    if breaker is not None:
        return breaker.is_marked_down()
    return any(b.is_marked_down() for b in _breakers())


def redis_outage_seen(key: str | None = None) -> bool:
    """Has the breaker of `key` seen an outage not recovered yet? Without a key in cluster
    mode: has any primary's?"""
    breaker = redis_breaker(key)
    if breaker is not None:
        return breaker.outage_seen()
    return any(b.outage_seen() for b in _breakers())


def redis_mark_down(key: str | None = None, *, error: BaseException | None = None) -> None:
    """Open the breaker of `key`. Without a key in cluster mode: the primary the error names
    (a cluster client's connection errors carry the node's connection), else every primary
    this process knows (it cannot tell which one failed)."""
    breaker = redis_breaker(key)
    if breaker is not None:
        breaker.mark_down()
        return
    conn = getattr(error, "connection", None)
    if conn is not None and getattr(conn, "port", None) is not None:
        _node(f"{conn.host}:{conn.port}").mark_down()
        return
    client = redis_cluster.cluster_client_if_made()
    names = {node.name for node in client.get_primaries()} if client is not None else set()
    for name in names | set(_nodes) or {UNRESOLVED}:
        _node(name).mark_down()


def redis_mark_up(key: str | None = None) -> None:
    """Redis (the primary of `key`; without one, every breaker) answered: close the breaker and
    run the recovery owed to it."""
    breaker = redis_breaker(key)
    for b in [breaker] if breaker is not None else _breakers():
        b.mark_up()


def redis_usable(key: str) -> bool:
    """May a call use the Redis serving `key` now? Not while its breaker is open; and if this
    process owes it a recovery, only once the recovery has run (it runs here). The hot path's
    one check: redis_is_marked_down, then redis_recovered, with one breaker lookup."""
    breaker = redis_breaker(key)
    if breaker.is_marked_down():
        return False
    if not breaker.outage_seen():
        return True
    return redis_recovered(key)


def redis_recovered(key: str | None = None) -> bool:
    """True unless the breaker of `key` saw an outage and its Redis is still away for the
    recovery. Without a key in cluster mode every breaker that saw one recovers (a process
    about to exit), True if all did."""
    breaker = redis_breaker(key)
    if breaker is not None:
        recovered = breaker.recovered()
        if recovered and _orphans:
            _orphans_recover()
        return recovered
    return all([b.recovered() for b in _breakers()])


def _orphans_recover() -> None:
    """A breaker that owes a recovery and lost slots to another primary (a replica took over,
    the slots moved) may never be reached through those keys again: its recovery runs at the
    next successful contact elsewhere, and what it republishes goes to the keys' new primary."""
    for orphan in list(_orphans):
        if orphan.recovered():
            _orphans.discard(orphan)


def redis_recovery_due() -> float:
    """When this process may first try a recovery it owes (time.monotonic(); inf: none owed)."""
    # An orphan (its slots moved) is recovered through another primary's contact, not its own.
    return min((b.retry_at() for b in _breakers() if b.outage_seen() and b not in _orphans), default=float("inf"))


def redis_recover_owed() -> None:
    """Reach every server this process owes a recovery to, once its retry interval has passed,
    and run the recovery, without waiting for a request to get there: a process left idle after
    an outage does not keep the month counters Redis rebuilt without its Postgres counts (the
    commit thread calls it, metering/batcher.py). One that cannot be reached is marked down."""
    for breaker in _breakers():
        if not breaker.outage_seen() or breaker.is_marked_down() or breaker in _orphans:
            continue
        try:
            _ping(breaker)
        except REDIS_UNAVAILABLE:
            breaker.mark_down()
            continue
        breaker.mark_up()
        if not breaker.outage_seen() and _orphans:
            _orphans_recover()


def _ping(breaker: RedisHealth) -> None:
    client = redis_client()
    target = {}
    if _cluster() and breaker.name != UNRESOLVED:
        target["target_nodes"] = client.get_node(node_name=breaker.name)
        if target["target_nodes"] is None:
            raise redis.exceptions.ConnectionError(f"{breaker.name} is not a node of the cluster's map")
    try:
        client.ping(**target)
    except RedisRestartedError:
        # Noticed now (its breaker is marked down, its outage seen): the next connection passes.
        client.ping(**target)


def redis_defer_to_recovery(keep: Callable[[], None], key: str | None = None) -> bool:
    """If the breaker of `key` has seen an outage, run `keep` under its recovery lock (so a
    recovery either collects it or has finished first) and return True. Without a key in
    cluster mode: the first breaker that has seen one."""
    breaker = redis_breaker(key)
    if breaker is not None:
        return breaker.defer_to_recovery(keep)
    return any(b.defer_to_recovery(keep) for b in _breakers() if b.outage_seen())


def on_recovery(callback: Callable[[], None]) -> Callable[[], None]:
    """Register `callback` to run when this process reaches a Redis (a primary) after its
    outage; `redis_recovering()` names which."""
    return health.on_recovery(callback)


def redis_recovering() -> RedisHealth | None:
    """The breaker whose recovery runs in this thread (for a recovery callback), else None."""
    return _recovering.get()


def _notes_of(key: str | None) -> list[RedisHealth]:
    breaker = redis_breaker(key) if key is not None else (_recovering.get() or redis_breaker())
    if breaker is not None:
        return [breaker]
    return [b for b in _breakers() if b.outage_seen()] or _breakers() or [_node(UNRESOLVED)]


def outage_note(kind: str, items: Iterable[Hashable], key: str | None = None) -> None:
    """Note `items` for the recovery of `key`'s breaker; without a key, of the recovery running
    in this thread, else (cluster mode) of every breaker that saw an outage."""
    items = list(items)
    for breaker in _notes_of(key):
        breaker.note(kind, items)


def outage_note_first(kind: str, item: Hashable, key: str | None = None) -> bool:
    """Note `item` (as outage_note); True if it was not noted yet since the last take."""
    return any([breaker.note_first(kind, item) for breaker in _notes_of(key)])


def outage_notes_take(kind: str, key: str | None = None) -> set:
    """Take the notes of `kind`: of `key`'s breaker; without a key, of the recovery running in
    this thread (a callback takes its node's notes only), else of every breaker."""
    if key is None and _recovering.get() is None and _cluster():
        taken: set = set()
        for breaker in _breakers():
            taken |= breaker.notes_take(kind)
        return taken
    return set().union(*(breaker.notes_take(kind) for breaker in _notes_of(key)))


def redis_state_reset() -> None:
    """Every breaker back to UP without running a recovery, forgetting notes and run ids (tests)."""
    health.reset()
    with _nodes_lock:
        for breaker in _nodes.values():
            breaker.reset()
        _nodes.clear()
    _slot_owners.clear()
    _orphans.clear()
    _run_ids.clear()


def redis_client() -> redis.Redis | redis.cluster.RedisCluster:
    """The shared client; in cluster mode (REDIS_CLUSTER) a RedisCluster, the one
    ClusterConnectionFactory gives the cache too (core.redis_cluster)."""
    client = get_redis_connection("default")
    if _cluster():
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
    previous, _run_ids[server] = _run_ids.get(server), run_id
    if previous is not None and previous != run_id:
        # Cluster mode: the restarted primary's breaker only (named by host and port).
        breaker = _node(f"{conn.host}:{conn.port}") if _cluster() else health
        breaker.mark_down()
        raise RedisRestartedError("Redis restarted since this process last reached it")


def redis_cluster_client_new() -> redis.cluster.RedisCluster:
    """A cluster client with pools of its own (the commit batcher's), restarts checked as on
    the shared one."""
    return redis_cluster.cluster_client_new(on_connect=run_id_check)


class ClusterConnectionFactory:
    """django-redis connection factory for cluster mode (config/settings.py): every cache
    client gets the process's one cluster client, whatever server of LOCATION django-redis asks
    for, so `redis_client()` and `django.core.cache` share one set of per-node pools."""

    def __init__(self, options: dict) -> None:
        self.options = options

    def connect(self, url: str) -> redis.cluster.RedisCluster:
        return redis_cluster.cluster_client(on_connect=run_id_check)

    def disconnect(self, connection: redis.cluster.RedisCluster) -> None:
        """django-redis closing "its" connection must not close the one every app shares; the
        per-node pools reconnect on their own."""
