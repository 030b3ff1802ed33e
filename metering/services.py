"""Writes of usage: the minute flush from Redis to Postgres, and direct counting when Redis is down."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone as dt_timezone
from decimal import Decimal

from django.db import IntegrityError, connection as db, transaction
from django.db.models import F, Value
from django.db.models.expressions import RawSQL
from django.conf import settings
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from redis.cluster import RedisCluster

from accounts.models import ApiKey, Customer
from core.redis import redis_breaker

from . import connection
from .batcher import meter_commits_send
from .models import SpendCapChange, UsageFlush, UsageLimits, UsageRecord
from .selectors import usage_month_snapshot
from .usage_fields import (
    flush_generation_key, month_counter_key, month_counter_ttl, open_calls_key, open_calls_keys,
    usage_batch_parse, usage_month_prefix,
)

logger = logging.getLogger(__name__)

FLUSH_BATCH = 500
INFLIGHT_TTL_SECONDS = 7 * 86400
VERSION_TTL_SECONDS = 7 * 86400
SEED_ATTEMPTS = 5

_UPSERT = f"""
    INSERT INTO {UsageRecord._meta.db_table} (customer_id, api_key_id, product, day, calls, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (customer_id, api_key_id, product, day)
    DO UPDATE SET calls = {UsageRecord._meta.db_table}.calls + EXCLUDED.calls, updated_at = EXCLUDED.updated_at
"""


def usage_add(
    *, customer_id: int, key_id: int | None, product: str, day: date, calls: int,
    last_used: datetime | None = None,
) -> None:
    """Count calls straight into Postgres (fail-open path and refunds of those calls)."""
    with transaction.atomic():
        _rows_upsert(customer_id, {(key_id, product, day): calls})
        if key_id is not None and calls > 0:
            _keys_touch({key_id: (calls, last_used or timezone.now())})
    transaction.on_commit(lambda: _flush_generation_raise(customer_id))


def _flush_generation_raise(customer_id: int) -> None:
    """Postgres totals changed outside a flush: drop /v1/usage's cached copy (best effort; the
    copy lives USAGE_CACHE_SECONDS at most)."""
    key = flush_generation_key(customer_id=customer_id)
    if connection.redis_is_marked_down(key):
        return
    try:
        pipe = connection.redis_client().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, INFLIGHT_TTL_SECONDS)
        pipe.execute()
    except connection.UNAVAILABLE:
        connection.redis_mark_down(key)


@dataclass(frozen=True)
class FlushReport:
    customers: int
    calls: int
    batches_skipped: int


def usage_flush() -> FlushReport:
    """Move every customer's pending Redis counters into UsageRecord, exactly once.

    Per customer: take the pending hash into an in-flight hash with a flush id (Lua, atomic),
    commit its rows together with a UsageFlush(flush_id) in one transaction, then drop the
    in-flight hash. A crash anywhere leaves the in-flight hash for the next run, which either
    finds its flush id committed (and just drops it) or applies it.
    """
    customer_ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    customers = calls = skipped = 0
    failed: BaseException | None = None
    connection.redis_client()  # on a cluster: its slot map names each customer's primary
    # One group per primary (one on a single Redis): a dead primary fails its own customers'
    # pipelines only; the others are flushed, then its error is raised (the next flush takes them).
    for group in _by_primary(customer_ids):
        try:
            for start in range(0, len(group), FLUSH_BATCH):
                _open_calls_release(group[start:start + FLUSH_BATCH])
                for customer_id, batch in usage_batches_take(customer_ids=group[start:start + FLUSH_BATCH]):
                    applied = usage_batch_apply(customer_id=customer_id, batch=batch)
                    usage_batch_release(customer_id=customer_id, flush_id=batch["__id"])
                    if applied is None:
                        skipped += 1
                    else:
                        customers += 1
                        calls += applied
        except connection.UNAVAILABLE as error:
            failed = failed or error
            logger.warning("usage flush: a Redis primary is unavailable; %d customers wait for the next flush",
                           len(group))
    if failed is not None:
        raise failed
    return FlushReport(customers=customers, calls=calls, batches_skipped=skipped)


def _by_primary(customer_ids: list[int]) -> list[list[int]]:
    """The customers grouped by the breaker of their primary (core.redis), in order: one group
    on a single Redis."""
    groups: dict[int, list[int]] = {}
    for customer_id in customer_ids:
        breaker = redis_breaker(connection.customer_key(customer_id, "ver"))
        groups.setdefault(id(breaker), []).append(customer_id)
    return list(groups.values())


def _open_calls_release(customer_ids: list[int]) -> None:
    """Release calls left open longer than any call can run: their worker died before
    answering, so they are not billed and give their place in the month back."""
    release = connection.script("open_expire")
    max_age_ms = settings.METERING_CALL_MAX_SECONDS * 1000
    client = connection.redis_client()
    _scripts_ready(client, customer_ids, "open_expire")
    pipe = client.pipeline(transaction=False)
    for customer_id in customer_ids:
        for open_key, month_key in open_calls_keys(customer_id=customer_id, day=timezone.now().date()):
            release(keys=[open_key, month_key], args=[max_age_ms], client=pipe)
    pipe.execute()


def _scripts_ready(client, customer_ids: list[int], *names: str) -> None:
    """connection.scripts_ready on the primaries of `customer_ids` only (a pipeline of this module
    is sent to one primary's customers at a time, _by_primary): another primary may be down."""
    if not isinstance(client, RedisCluster) or not customer_ids:
        return
    nodes = {node.name: node for node in (client.get_node_from_key(connection.customer_key(customer_id, "ver"))
                                          for customer_id in customer_ids)}
    scripts = [connection.script(name) for name in names]
    for node in nodes.values():
        exists = client.execute_command("SCRIPT EXISTS", *(lua.sha for lua in scripts), target_nodes=node)
        for lua, known in zip(scripts, exists):
            if not known:
                client.execute_command("SCRIPT LOAD", lua.script, target_nodes=node)


def usage_batches_take(*, customer_ids: list[int]) -> list[tuple[int, dict[str, str]]]:
    """The flush's first step: each customer's pending usage becomes its in-flight batch (or
    the batch a crashed flush left in flight is taken again)."""
    # This process's own answered calls join the pending hash before it is taken, those admitted
    # under a quota lease too: the flush closes every lease this process holds (closing one early
    # only means its next call asks for a new one).
    meter_commits_send(leases_all=True)
    take = connection.script("flush_take")
    client = connection.redis_client()
    _scripts_ready(client, customer_ids, "flush_take")
    pipe = client.pipeline(transaction=False)
    for customer_id in customer_ids:
        take(
            keys=[connection.customer_key(customer_id, "pending"), connection.customer_key(customer_id, "inflight"),
                  flush_generation_key(customer_id=customer_id)],
            args=[uuid.uuid4().hex, INFLIGHT_TTL_SECONDS],
            client=pipe,
        )
    taken = []
    for customer_id, flat in zip(customer_ids, pipe.execute()):
        if flat:
            pairs = iter(item.decode() for item in flat)
            taken.append((customer_id, dict(zip(pairs, pairs))))
    return taken


def usage_batch_apply(*, customer_id: int, batch: dict[str, str]) -> int | None:
    """Commit one taken batch; None when this flush id was committed before."""
    parsed = usage_batch_parse(batch)
    calls = sum(parsed.calls.values())
    touches = {
        key_id: (sum(n for (k, _, _), n in parsed.calls.items() if k == key_id),
                 datetime.fromtimestamp(epoch, tz=dt_timezone.utc))
        for key_id, epoch in parsed.last_used.items()
    }
    try:
        with transaction.atomic():
            UsageFlush.objects.create(flush_id=batch["__id"], customer_id=customer_id, calls=max(0, calls))
            _rows_upsert(customer_id, parsed.calls)
            _keys_touch(touches)
    except IntegrityError as error:
        if UsageFlush.objects.filter(flush_id=batch["__id"]).exists():
            return None
        raise error
    return calls


def usage_batch_release(*, customer_id: int, flush_id: str) -> None:
    connection.run_script(
        connection.redis_client(), "flush_done",
        (connection.customer_key(customer_id, "inflight"), flush_generation_key(customer_id=customer_id)), (flush_id,)
    )


def _rows_upsert(customer_id: int, rows: dict[tuple[int | None, str, date | str], int]) -> None:
    known = set(ApiKey.objects.filter(pk__in={k for k, _, _ in rows if k}).values_list("pk", flat=True))
    now = timezone.now()
    params = [
        [customer_id, key_id if key_id in known else None, product, day, calls, now]
        for (key_id, product, day), calls in rows.items() if calls
    ]
    # Postgres checks `calls >= 0` on the proposed row even when it conflicts, so
    # refunds (negative deltas) go through a plain UPDATE of the row they took from.
    added = [p for p in params if p[4] > 0]
    if added:
        with db.cursor() as cursor:
            cursor.executemany(_UPSERT, added)
    for customer, key_id, product, day, calls, _ in (p for p in params if p[4] < 0):
        UsageRecord.objects.filter(customer_id=customer, api_key_id=key_id, product=product, day=day).update(
            calls=db_greatest_zero("calls", calls), updated_at=now
        )


def _keys_touch(touches: dict[int, tuple[int, datetime]]) -> None:
    for key_id, (calls, when) in touches.items():
        ApiKey.objects.filter(pk=key_id).update(
            call_count=db_greatest_zero("call_count", calls),
            last_used_at=db_latest("last_used_at", when),
        )


def db_greatest_zero(field: str, delta: int):
    return Greatest(F(field) + Value(delta), Value(0))


def db_latest(field: str, when: datetime):
    return Greatest(Coalesce(F(field), Value(when)), Value(when))


def customer_config_bump(*, customer_ids: list[int], month_reset: bool = False) -> None:
    """Raise the customers' config version; after commit, tell Redis so every worker reloads
    (with `month_reset`, Redis also drops their month counters, to be rebuilt from Postgres)."""
    if not customer_ids:
        return
    # The database clock in microseconds (or +1 if that is not ahead): a save() that wrote
    # back a stale in-memory version still ends up with a newer one.
    Customer.objects.filter(pk__in=customer_ids).update(config_version=Greatest(
        F("config_version") + 1,
        RawSQL("(extract(epoch from clock_timestamp()) * 1000000)::bigint", []),
    ))
    transaction.on_commit(lambda: _versions_publish(customer_ids, month_reset=month_reset))


def _versions_publish(customer_ids: list[int], *, month_reset: bool) -> None:
    # Until this process has run its recovery, what it publishes waits for it (with the month
    # counters reset): published alone, a version would hide that Redis missed calls. On a
    # cluster, per primary: one that is down holds back its own customers only.
    for group in _by_primary(customer_ids):
        key = connection.customer_key(group[0], "ver")
        if connection.redis_defer_to_recovery(lambda: _unpublished_add(group), key):
            continue
        try:
            _versions_send(group, month_reset=month_reset)
        except connection.UNAVAILABLE:
            connection.redis_mark_down(key)
            _unpublished_add(group)
            logger.warning("could not publish config versions for %d customers; retried when Redis is back",
                           len(group))


def _versions_send(customer_ids: list[int], *, month_reset: bool) -> None:
    """Raise each customer's version in Redis (never backwards). With `month_reset`, also drop
    this month's counter: it was not kept while Redis was away, so the next call rebuilds it."""
    versions = list(Customer.objects.filter(pk__in=customer_ids).values_list("pk", "config_version"))
    raise_version = connection.script("version_raise")
    client = connection.redis_client()
    _scripts_ready(client, [customer_id for customer_id, _ in versions], "version_raise")
    pipe = client.pipeline(transaction=False)
    day = timezone.now().date()
    for customer_id, version in versions:
        raise_version(keys=[connection.customer_key(customer_id, "ver")],
                      args=[version, VERSION_TTL_SECONDS], client=pipe)
        if month_reset:
            pipe.delete(month_counter_key(customer_id=customer_id, day=day))
            # Postgres totals changed while Redis was away: cached copies of them are stale too.
            pipe.incr(flush_generation_key(customer_id=customer_id))
            pipe.expire(flush_generation_key(customer_id=customer_id), INFLIGHT_TTL_SECONDS)
    pipe.execute()


# What this process could not tell Redis during an outage, kept as notes of the outage state
# (core.redis): customers whose version it did not publish, and customers it counted straight
# into Postgres (their config version was raised once, so Redis is known to be behind for them
# until their month counter is rebuilt).
UNPUBLISHED = "metering.unpublished_versions"
COUNTED_IN_POSTGRES = "metering.counted_in_postgres"


def _unpublished_add(customer_ids: list[int]) -> None:
    # Noted for the recovery of each customer's primary (one breaker on a single Redis).
    for group in _by_primary(customer_ids):
        connection.outage_note(UNPUBLISHED, group, connection.customer_key(group[0], "ver"))


def customer_counted_in_postgres(*, customer_id: int) -> None:
    """The fail-open path counted a call of this customer in Postgres. The first time in an
    outage, raise its config version: whichever worker next meets it in Redis (this process's
    retry below, or any worker that reloads the config) rebuilds the month counter from
    Postgres, so the calls counted here are never missing from the hard cap."""
    if connection.outage_note_first(COUNTED_IN_POSTGRES, customer_id, connection.customer_key(customer_id, "ver")):
        customer_config_bump(customer_ids=[customer_id], month_reset=True)


@connection.on_recovery
def config_versions_republish() -> None:
    """Redis is back: publish what could not be published and reset the month counters it
    kept for those customers. Raises connection.UNAVAILABLE (and keeps the list) if it is
    gone again. On a cluster it runs per primary and takes that primary's notes only (core.redis):
    it never sends to another, possibly dead, one."""
    customer_ids = sorted(connection.outage_notes_take(UNPUBLISHED))
    connection.outage_notes_take(COUNTED_IN_POSTGRES)
    if not customer_ids:
        return
    try:
        _versions_send(customer_ids, month_reset=True)
    except connection.UNAVAILABLE:
        _unpublished_add(customer_ids)
        raise
    logger.info("published config versions of %d customers after an outage", len(customer_ids))


def month_counter_seed(*, customer_id: int, day: date, version: int) -> int:
    """Rebuild the customer's month counter from Postgres plus what Redis holds unflushed
    (month_seed.lua) and record `version` as the one Redis has seen. Returns the month's calls."""
    keys = (month_counter_key(customer_id=customer_id, day=day), connection.customer_key(customer_id, "pending"),
            connection.customer_key(customer_id, "inflight"), open_calls_key(customer_id=customer_id, day=day),
            flush_generation_key(customer_id=customer_id), connection.customer_key(customer_id, "ver"))
    fixed = (usage_month_prefix(day=day), month_counter_ttl(day=day), version, VERSION_TTL_SECONDS)
    client = connection.redis_client()
    # The first try only learns the flush generation and in-flight batch to read Postgres against.
    reply = connection.run_script(client, "month_seed", keys, (0, "", "?", 0, *fixed))
    for _ in range(SEED_ATTEMPTS):
        generation, flush_id = (part.decode() if isinstance(part, bytes) else part for part in reply[1:])
        total, applied = usage_month_snapshot(customer_id=customer_id, day=day, flush_id=flush_id)
        reply = connection.run_script(client, "month_seed", keys, (total, generation, flush_id, int(applied), *fixed))
        if reply[0] == 1:
            return int(reply[1])
    raise RuntimeError("flushes kept moving the month's usage while rebuilding its counter")


def usage_limits_set(
    *, customer_id: int, alert_at_calls: list[int], call_ceiling: int | None, spend_cap: Decimal | None = None,
) -> None:
    """Store where a customer's usage alerts fire and where its calls stop. Saving raises the
    customer's config version (signals), so the next call sees it."""
    if call_ceiling is not None and call_ceiling < 0:
        raise ValueError("call_ceiling cannot be negative")
    thresholds = sorted({int(t) for t in alert_at_calls if int(t) > 0})
    previous = UsageLimits.objects.filter(customer_id=customer_id).values_list("spend_cap", flat=True).first()
    if previous != spend_cap:
        SpendCapChange.objects.create(customer_id=customer_id, spend_cap=spend_cap)
    UsageLimits.objects.update_or_create(
        customer_id=customer_id,
        defaults={"alert_at_calls": thresholds, "call_ceiling": call_ceiling, "spend_cap": spend_cap},
    )
