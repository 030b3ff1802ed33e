"""The commit batcher: bills the calls answered 2xx off the request path (README "The metered API").

A call answered 2xx is billed by commit.lua, which moves it from the open calls into the pending
usage hash. Its commit joins a per-process queue, one entry per (open zset, pending hash), that a
background thread sends in one pipeline at most every METERING_COMMIT_SECONDS, so the answered
call itself costs no second round trip. The flush and process exit send the queue too. What a
killed process had queued is lost: those calls are released by the flush, unbilled (never billed
twice, at most METERING_COMMIT_SECONDS of one process's answers under-billed). While Redis is
away the queue is kept for the first send after the outage, up to MAX_QUEUED_COMMITS calls.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from datetime import date

import redis
from django.conf import settings

from . import connection
from .usage_fields import PENDING_TTL_SECONDS, last_used_field, open_calls_key

logger = logging.getLogger(__name__)

# Commits waiting for Redis beyond this many calls are dropped (those calls go unbilled).
MAX_QUEUED_COMMITS = 100_000

_commits: dict[tuple[str, str], list[str]] = {}
_commits_queued = 0
_commits_lock = threading.Lock()
_committer: threading.Thread | None = None


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


def meter_commits_send() -> int:
    """Send this process's queued commits now (the background thread does it every
    METERING_COMMIT_SECONDS; the flush and process exit call it too). Returns calls billed."""
    global _commits_queued
    if connection.redis_is_marked_down():
        return 0  # kept for the first send after the outage
    with _commits_lock:
        batch = dict(_commits)
        _commits.clear()
        _commits_queued = 0
    if not batch:
        return 0
    try:
        return _commits_run(batch)
    except connection.UNAVAILABLE:
        connection.redis_mark_down()
        _commits_requeue(batch)
        return 0


def _commits_run(batch: dict[tuple[str, str], list[str]]) -> int:
    client = connection.redis_client()
    lua = connection.script("commit")
    replies = _commits_pipeline(client, lua.sha, batch)
    missing = {target: args for (target, args), reply in zip(batch.items(), replies)
               if isinstance(reply, redis.exceptions.NoScriptError)}
    if missing:
        # Redis restarted or was flushed: load the script once and send only what failed.
        client.script_load(lua.script)
        replies = [r for r in replies if not isinstance(r, redis.exceptions.NoScriptError)]
        replies += _commits_pipeline(client, lua.sha, missing)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return sum(replies)


def _commits_pipeline(client, sha: str, batch: dict[tuple[str, str], list[str]]) -> list:
    pipe = client.pipeline(transaction=False)
    for (open_key, pending_key), args in batch.items():
        pipe.evalsha(sha, 2, open_key, pending_key, PENDING_TTL_SECONDS, *args)
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


def _committer_start() -> None:
    global _committer
    with _commits_lock:
        if _committer is not None:
            return
        _committer = threading.Thread(target=_committer_loop, name="meter-commits", daemon=True)
    _committer.start()


def _committer_loop() -> None:
    pause = threading.Event()
    while True:
        pause.wait(getattr(settings, "METERING_COMMIT_SECONDS", 0.5))
        try:
            meter_commits_send()
        except Exception:  # noqa: BLE001 - the thread must outlive any one failure
            logger.exception("sending metering commits failed")


def _committer_reset_after_fork() -> None:
    # The parent's queue and thread are not this process's: a child starts empty.
    global _commits, _commits_queued, _commits_lock, _committer
    _commits, _commits_queued, _commits_lock, _committer = {}, 0, threading.Lock(), None


def meter_exit() -> None:
    """A process exiting normally (gunicorn's graceful stop, max_requests) gets no later chance:
    if it saw Redis fail it runs its recovery now, breaker open or not, so the config versions it
    raised reach Redis and the month counters that miss the calls it counted in Postgres are
    rebuilt (README "The metered API"); then it bills what it answered."""
    try:
        connection.redis_recovered()
    except Exception:  # noqa: BLE001 - Postgres may be gone too: still try to bill
        logger.exception("recovery at exit failed")
    meter_commits_send()


os.register_at_fork(after_in_child=_committer_reset_after_fork)
atexit.register(meter_exit)
