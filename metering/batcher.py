"""The commit batcher: bills the calls answered 2xx off the request path (README "The metered API").

A call answered 2xx is billed by commit.lua, which moves it from the open calls into the pending
usage hash. Its commit joins a per-process queue, one entry per (open zset, pending hash), that a
background thread sends in one pipeline at most every METERING_COMMIT_SECONDS, so the answered
call itself costs no second round trip. The flush and process exit send the queue too. What a
killed process had queued is lost: those calls are released by the flush, unbilled (never billed
twice, at most METERING_COMMIT_SECONDS of one process's answers under-billed). While Redis is
away the queue is kept for the first send after the outage, up to MAX_QUEUED_COMMITS calls.

The same thread closes this process's quota leases (metering/leases.py) as soon as they expire or
are used up: their lease_close.lua scripts join the pipeline.

On a Redis Cluster the queue is sent as one pipeline per primary, each behind that primary's
breaker (core.redis): a primary that is down keeps only its own customers' commits and closes.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from datetime import date

import redis
from django.conf import settings
from django.db import connection as db_connection

from core.redis import RedisHealth, redis_breaker, redis_breakers_down
from . import connection, leases
from .usage_fields import PENDING_TTL_SECONDS, last_used_field, open_calls_key

logger = logging.getLogger(__name__)

# Commits waiting for Redis beyond this many calls are dropped (those calls go unbilled).
MAX_QUEUED_COMMITS = 100_000
# Cluster mode, one primary down: how often the committer sends the others' due lease closes.
CLUSTER_DOWN_POLL_SECONDS = 0.05

_commits: dict[tuple[str, str], list[str]] = {}
_commits_queued = 0
_commits_lock = threading.Lock()
_send_lock = threading.Lock()  # meter_commits_send
_committer: threading.Thread | None = None
_wake = threading.Event()
_sender_client: redis.Redis | None = None
_sender_base: redis.Redis | None = None


def commit_later(*, customer_id: int, day: date, open_member: str, field: str, key_id: int) -> None:
    """Queue the bill of one call answered 2xx: its open member, usage field and key."""
    global _commits_queued
    target = (open_calls_key(customer_id=customer_id, day=day), connection.customer_key(customer_id, "pending"))
    with _commits_lock:
        if _commits_queued >= MAX_QUEUED_COMMITS:
            logger.warning("commit queue full: a call answered 2xx goes unbilled")
            return
        _commits.setdefault(target, []).extend((open_member, field, last_used_field(key_id=key_id)))
        _commits_queued += 1
    if _committer is None:
        _committer_start()


def meter_commits_send(*, leases_all: bool = False) -> int:
    """Send this process's queued commits and due lease closes now (the background thread does it
    every METERING_COMMIT_SECONDS, and as soon as a lease expires; the flush and process exit
    call it too, the exit with `leases_all`: every lease is closed). Returns calls billed.
    One send at a time: a flush waits for the committer's batch in flight, so what this process
    answered 2xx before the flush is in Redis when the flush takes it."""
    with _send_lock:
        if settings.REDIS_CLUSTER:
            return _commits_send_per_primary(leases_all)
        return _commits_send(leases_all)


def _commits_send(leases_all: bool) -> int:
    if connection.redis_is_marked_down():
        return 0  # kept for the first send after the outage
    batch, closes = _due_take(leases_all)
    if not batch and not closes:
        return 0
    try:
        return _commits_run(batch, closes)
    except connection.UNAVAILABLE:
        connection.redis_mark_down()
        _commits_requeue(batch)
        leases.leases_requeue(closes)
        return 0


def _commits_send_per_primary(leases_all: bool) -> int:
    """meter_commits_send on a cluster: one pipeline per primary, each behind that primary's
    breaker (core.redis). What a primary that is down (or fails now) should take is kept for the
    next send, the rest is billed: one dead primary holds back its own customers only."""
    batch, closes = _due_take(leases_all)
    if not batch and not closes:
        return 0
    # Every key of a send carries one customer's hash tag: its first names the primary.
    groups: dict[RedisHealth, tuple[dict, list]] = {}
    for target, args in batch.items():
        groups.setdefault(redis_breaker(target[0]), ({}, []))[0][target] = args
    close_breakers = [redis_breaker(keys[0]) for keys, _ in closes]
    for breaker, close in zip(close_breakers, closes):
        groups.setdefault(breaker, ({}, []))[1].append(close)
    billed, kept = 0, set()
    for breaker, (part, part_closes) in groups.items():
        if breaker.is_marked_down():
            kept.add(breaker)
            continue
        try:
            billed += _commits_run(part, part_closes)
        except connection.UNAVAILABLE:
            breaker.mark_down()
            kept.add(breaker)
    if kept:
        _commits_requeue({t: a for breaker in kept for t, a in groups[breaker][0].items()})
        # In their first order: a lease's closes all go to its customer's primary, in sequence.
        leases.leases_requeue([close for breaker, close in zip(close_breakers, closes) if breaker in kept])
    return billed


def _due_take(leases_all: bool) -> tuple[dict[tuple[str, str], list[str]], list[tuple[tuple, tuple]]]:
    """Take the queued commits and the lease closes due (every lease's with `leases_all`)."""
    global _commits_queued
    with _commits_lock:
        batch = dict(_commits)
        _commits.clear()
        _commits_queued = 0
    return batch, leases.leases_close_due(everything=leases_all)


def _sender() -> redis.Redis:
    """A client of its own for what this module sends, on a pool of its own with the shared
    client's settings (restart detection included): a batch in flight never holds the connection a
    request needs, nor makes a request open a new one."""
    global _sender_client, _sender_base
    base = connection.redis_client()
    if _sender_client is None or _sender_base is not base:
        if isinstance(base, redis.cluster.RedisCluster):
            _sender_client = connection.redis_cluster_client_new()  # pools of its own on every node
        else:
            pool = base.connection_pool
            _sender_client = redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class,
                                                                    **pool.connection_kwargs))
        _sender_base = base
    return _sender_client


def _commits_run(batch: dict[tuple[str, str], list[str]], closes: list[tuple[tuple, tuple]]) -> int:
    client = _sender()
    commit, close = connection.script("commit"), connection.script("lease_close")
    sends = [(commit, (open_key, pending_key), (PENDING_TTL_SECONDS, *args))
             for (open_key, pending_key), args in batch.items()]
    sends += [(close, keys, args) for keys, args in closes]
    replies = _commits_pipeline(client, sends)
    missing = [send for send, reply in zip(sends, replies) if isinstance(reply, redis.exceptions.NoScriptError)]
    if missing:
        # Redis restarted or was flushed: load the scripts once and send only what failed (a
        # lease's closes keep their order: a residual's close comes after the one naming it).
        for lua in {id(lua): lua for lua, _, _ in missing}.values():
            if isinstance(client, redis.cluster.RedisCluster):
                # Only where it was missing: another primary may be down (one pipeline per primary).
                for node in {client.get_node_from_key(keys[0]).name: client.get_node_from_key(keys[0])
                             for _, keys, _ in missing}.values():
                    client.execute_command("SCRIPT LOAD", lua.script, target_nodes=node)
            else:
                client.script_load(lua.script)
        replies = [r for r in replies if not isinstance(r, redis.exceptions.NoScriptError)]
        replies += _commits_pipeline(client, missing)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return sum(max(0, reply) for reply in replies)


def _commits_pipeline(client, sends: list) -> list:
    pipe = client.pipeline(transaction=False)
    for lua, keys, args in sends:
        pipe.evalsha(lua.sha, len(keys), *keys, *args)
    return pipe.execute(raise_on_error=False)


def _commits_requeue(batch: dict[tuple[str, str], list[str]]) -> None:
    global _commits_queued
    with _commits_lock:
        for target, args in batch.items():
            if _commits_queued + len(args) // 3 > MAX_QUEUED_COMMITS:
                logger.warning("commit queue full: %d calls answered 2xx go unbilled", len(args) // 3)
                continue
            _commits.setdefault(target, []).extend(args)
            _commits_queued += len(args) // 3


def committer_wake() -> None:
    """A lease was granted or is ready to close: the committer thread recomputes when to send."""
    if _committer is None:
        _committer_start()
    _wake.set()


def _committer_start() -> None:
    global _committer
    with _commits_lock:
        if _committer is not None:
            return
        _committer = threading.Thread(target=_committer_loop, name="meter-commits", daemon=True)
    _committer.start()


def _committer_loop() -> None:
    next_commit = time.monotonic() + _commit_interval()
    next_recovery_try = 0.0
    while True:
        now = time.monotonic()
        # A recovery this process owes Redis runs here once its retry interval is over, not at the
        # next call that happens to come (core.redis): the month counters of the customers it
        # counted in Postgres are rebuilt within REDIS_RETRY_SECONDS of Redis coming back.
        recovery = max(next_recovery_try, connection.redis_recovery_due())
        if recovery <= now:
            next_recovery_try = _recover_owed(now)
            continue
        # While Redis is away nothing is sent (meter_commits_send keeps it): no lease is due early.
        # On a cluster the other primaries' leases still are, but closes kept for a primary that is
        # down make every deadline "now": wait a little between sends instead of spinning.
        if not settings.REDIS_CLUSTER:
            due = next_commit if connection.redis_is_marked_down() else min(next_commit, leases.leases_next_deadline())
        else:
            deadline = leases.leases_next_deadline()
            if redis_breakers_down():
                deadline = max(deadline, now + CLUSTER_DOWN_POLL_SECONDS)
            due = min(next_commit, deadline)
        due = min(due, recovery)
        if due > now:
            _wake.wait(due - now)
            _wake.clear()
            continue
        if now >= next_commit:
            next_commit = now + _commit_interval()
        try:
            meter_commits_send()
        except Exception:  # noqa: BLE001 - the thread must outlive any one failure
            logger.exception("sending metering commits failed")
            time.sleep(0.1)  # not a busy loop while a send keeps failing


def _recover_owed(now: float) -> float:
    """Run the recoveries due; returns when to try again should one fail for another reason
    than Redis (Postgres away: the next try waits a retry interval instead of spinning)."""
    try:
        connection.redis_recover_owed()
        return 0.0
    except Exception:  # noqa: BLE001 - the thread must outlive any one failure
        logger.exception("recovering after a Redis outage failed")
        return now + settings.REDIS_RETRY_SECONDS
    finally:
        db_connection.close()  # this thread's own: a long-lived thread must not hold one from the pool


def _commit_interval() -> float:
    return getattr(settings, "METERING_COMMIT_SECONDS", 0.5)


def _committer_reset_after_fork() -> None:
    # The parent's queue and thread are not this process's: a child starts empty.
    global _commits, _commits_queued, _commits_lock, _send_lock, _committer
    _commits, _commits_queued, _commits_lock, _send_lock, _committer = {}, 0, threading.Lock(), threading.Lock(), None
    _wake.clear()


def meter_exit() -> None:
    """A process exiting normally (gunicorn's graceful stop, max_requests) gets no later chance:
    if it saw Redis fail it runs its recovery now, breaker open or not, so the config versions it
    raised reach Redis and the month counters that miss the calls it counted in Postgres are
    rebuilt (README "The metered API"); then it bills what it answered."""
    try:
        connection.redis_recovered()
    except Exception:  # noqa: BLE001 - Postgres may be gone too: still try to bill
        logger.exception("recovery at exit failed")
    meter_commits_send(leases_all=True)


leases.ready_hook = _wake.set
os.register_at_fork(after_in_child=_committer_reset_after_fork)
atexit.register(meter_exit)
