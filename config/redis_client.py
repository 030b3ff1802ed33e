"""The one Redis client of the project, the errors that mean "Redis is not there", and a
circuit breaker every app shares.

Every app reaches Redis through `redis_client()` and treats `REDIS_UNAVAILABLE` as an outage
(not a bug). After a failure the breaker skips Redis for REDIS_RETRY_SECONDS, so each request
does not pay a connect timeout. A process also remembers that it saw an outage until its next
successful contact; code that must act once Redis is back (drop caches built from stale data,
publish what could not be published) registers with `on_recovery`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import redis
from django.conf import settings
from django_redis import get_redis_connection

logger = logging.getLogger(__name__)

# Errors that mean Redis cannot answer now (down, unreachable, slow, still loading its data
# after a restart), as opposed to a bug in a command or a script.
REDIS_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)

_down_until = 0.0
_outage_seen = False
_failures = 0  # raised by every mark_down: a recovery that overlapped one is not final
_recovery_callbacks: list[Callable[[], None]] = []
_recovery_lock = threading.RLock()  # a callback may defer more work to the recovery it is in


def redis_client() -> redis.Redis:
    client = get_redis_connection("default")
    connection_kwargs = client.connection_pool.connection_kwargs
    if connection_kwargs.get("redis_connect_func") is not _connected:
        connection_kwargs["redis_connect_func"] = _connected  # for the pool's new connections
    return client


# The run id of each Redis server this process has talked to: a new one means it restarted.
_run_ids: dict[tuple, str] = {}


def _connected(conn: redis.connection.AbstractConnection) -> None:
    """Every new connection asks the server's run id. A pool quietly replaces connections a
    restarted Redis dropped, so a process that made no call during a short outage would not
    notice it otherwise; a restart is an outage (what was written since the last fsync, and any
    change whose publish failed, may be missing), so the first connection after one fails."""
    conn.on_connect()
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
        redis_mark_down()
        raise redis.exceptions.ConnectionError("Redis restarted since this process last reached it")


def redis_is_marked_down() -> bool:
    return time.monotonic() < _down_until


def redis_outage_seen() -> bool:
    """True from a failure until this process next reached Redis (and ran its recovery)."""
    return _outage_seen


def redis_mark_down() -> None:
    """Skip Redis for a moment: one failed connect per interval, not one per request."""
    global _down_until, _outage_seen, _failures
    _down_until = time.monotonic() + settings.REDIS_RETRY_SECONDS
    _outage_seen = True
    _failures += 1


def redis_mark_up() -> None:
    """Redis answered: run the recovery callbacks once if this process had seen an outage.

    A callback that meets Redis gone again marks it down and leaves the outage open, so the
    callbacks run again at the next successful contact."""
    global _down_until, _outage_seen
    _down_until = 0.0
    if not _outage_seen:
        return
    with _recovery_lock:
        if not _outage_seen:
            return
        failures = _failures
        try:
            for callback in _recovery_callbacks:
                callback()
        except REDIS_UNAVAILABLE:
            redis_mark_down()
            return
        if failures != _failures:
            return  # another thread met Redis gone meanwhile: recover again next time
        _outage_seen = False
    logger.info("redis is reachable again")


def redis_recovered() -> bool:
    """True unless this process saw an outage and Redis is still away for its recovery."""
    if _outage_seen:
        redis_mark_up()
    return not _outage_seen


def redis_defer_to_recovery(keep: Callable[[], None]) -> bool:
    """If this process is in an outage, run `keep` (which stores work for a recovery callback)
    and return True; otherwise return False and let the caller act now. A recovery running
    meanwhile either collects what `keep` stored or has finished first: nothing falls between."""
    if not _outage_seen:
        return False
    with _recovery_lock:
        if not _outage_seen:
            return False
        keep()
        return True


def on_recovery(callback: Callable[[], None]) -> Callable[[], None]:
    """Register `callback` to run when this process reaches Redis after an outage."""
    if callback not in _recovery_callbacks:
        _recovery_callbacks.append(callback)
    return callback


def redis_state_reset() -> None:
    """Forget any outage without running the recovery (tests)."""
    global _down_until, _outage_seen
    _down_until = 0.0
    _outage_seen = False
    _run_ids.clear()
