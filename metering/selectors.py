"""Reads of usage: Postgres totals, plus what Redis holds that has not been flushed yet."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone as dt_timezone

from django.db import connection as db
from django.db.models import Max, Sum

from core.periods import period_bounds, period_of

from . import connection
from .models import UsageFlush, UsageRecord
from .usage_fields import (
    flush_generation_key, month_counter_key, open_calls_batch, open_calls_key, usage_batch_parse, usage_cache_key,
)


def month_bounds(day: date) -> tuple[date, date]:
    """The billing period `day` is in: its first day and the next period's (core.periods)."""
    return period_bounds(period_of(day))


def usage_month_snapshot(*, customer_id: int, day: date, flush_id: str) -> tuple[int, bool]:
    """The Postgres month total and whether flush batch `flush_id` is part of it, read in one
    statement, so both come from the same snapshot (a flush committing meanwhile is in both
    or in neither)."""
    start, end = month_bounds(day)
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE((SELECT SUM(calls) FROM {UsageRecord._meta.db_table} "
            "WHERE customer_id = %s AND day >= %s AND day < %s), 0), "
            f"EXISTS(SELECT 1 FROM {UsageFlush._meta.db_table} WHERE flush_id = %s)",
            [customer_id, start, end, flush_id],
        )
        total, applied = cursor.fetchone()
    return int(total), bool(applied)


def usage_month_total(*, customer_id: int, day: date) -> int:
    start, end = month_bounds(day)
    total = UsageRecord.objects.filter(customer_id=customer_id, day__gte=start, day__lt=end).aggregate(
        calls=Sum("calls")
    )["calls"]
    return int(total or 0)


@dataclass
class UsageSummary:
    period: str
    calls: int = 0
    by_product: dict[str, int] = field(default_factory=dict)
    by_day: dict[str, int] = field(default_factory=dict)
    unflushed: int = 0


USAGE_CACHE_SECONDS = 30


def usage_summary(*, customer_id: int, day: date, cached: bool = False) -> UsageSummary:
    """This month's calls: flushed rows plus what Redis holds (pending, in flight, calls open).

    With `cached`, the Postgres part is reused from Redis for up to USAGE_CACHE_SECONDS while
    the customer's flush generation is unchanged (no flush took or applied a batch since), so
    /v1/usage costs no SQL in steady state and is never off by a flushed batch."""
    start, end = month_bounds(day)
    live = _redis_live(customer_id, day)
    rows, applied = _flushed(customer_id, start, end, live, cached)
    products: dict[str, int] = defaultdict(int)
    days: dict[str, int] = defaultdict(int)
    for (product, day_iso), calls in rows.items():
        products[product] += calls
        days[day_iso] += calls
    unflushed = 0
    for product, day_iso, calls in _unflushed(live, applied):
        if start.isoformat() <= day_iso < end.isoformat():
            products[product] += calls
            days[day_iso] += calls
            unflushed += calls
    return UsageSummary(
        period=f"{start:%Y-%m}", calls=sum(products.values()), by_product=dict(products),
        by_day=dict(sorted(days.items())), unflushed=unflushed,
    )


@dataclass(frozen=True)
class _RedisLive:
    generation: str
    cache: dict | None
    pending: dict
    inflight: dict
    opened: list

    @property
    def inflight_id(self) -> str:
        flush_id = self.inflight.get(b"__id")
        return flush_id.decode() if flush_id else ""


def _redis_live(customer_id: int, day: date) -> _RedisLive | None:
    """One round trip: everything /v1/usage needs from Redis. Read before Postgres (see
    usage_redis_read)."""
    node_key = flush_generation_key(customer_id=customer_id)  # on a cluster: its primary's breaker
    if connection.redis_is_marked_down(node_key):
        return None
    try:
        pipe = connection.redis_client().pipeline(transaction=False)
        pipe.get(node_key)
        pipe.get(usage_cache_key(customer_id=customer_id, day=day))
        pipe.hgetall(connection.customer_key(customer_id, "pending"))
        pipe.hgetall(connection.customer_key(customer_id, "inflight"))
        pipe.zrange(open_calls_key(customer_id=customer_id, day=day), 0, -1)
        generation, cache, pending, inflight, opened = pipe.execute()
    except connection.UNAVAILABLE:
        connection.redis_mark_down(node_key)
        return None
    return _RedisLive(generation=(generation or b"0").decode(), cache=json.loads(cache) if cache else None,
                      pending=pending, inflight=inflight, opened=opened)


def _flushed(customer_id: int, start: date, end: date, live: _RedisLive | None, cached: bool
             ) -> tuple[dict[tuple[str, str], int], str]:
    """Postgres calls per (product, ISO day), and the in-flight flush id they already include."""
    if cached and live and live.cache and live.cache["generation"] == live.generation:
        return {(p, d): n for p, d, n in live.cache["rows"]}, live.cache["applied"]
    rows = UsageRecord.objects.filter(customer_id=customer_id, day__gte=start, day__lt=end)
    totals = {(row["product"], row["day"].isoformat()): row["calls"]
              for row in rows.values("product", "day").annotate(calls=Sum("calls"))}
    applied = ""
    if live and live.inflight_id and UsageFlush.objects.filter(flush_id=live.inflight_id).exists():
        applied = live.inflight_id
    if cached and live:
        _flushed_remember(customer_id, start, live.generation, totals, applied)
    return totals, applied


def _flushed_remember(customer_id, start, generation, totals, applied) -> None:
    payload = {"generation": generation, "applied": applied, "rows": [[p, d, n] for (p, d), n in totals.items()]}
    key = usage_cache_key(customer_id=customer_id, day=start)
    try:
        connection.redis_client().set(key, json.dumps(payload), ex=USAGE_CACHE_SECONDS)
    except connection.UNAVAILABLE:
        connection.redis_mark_down(key)


def _unflushed(live: _RedisLive | None, applied: str) -> list[tuple[str, str, int]]:
    if live is None:
        return []
    batches = [live.pending, open_calls_batch(live.opened)]
    if live.inflight_id and live.inflight_id != applied:
        batches.append(live.inflight)
    return [(product, day, calls) for batch in batches
            for (_, product, day), calls in usage_batch_parse(batch).calls.items()]


@dataclass(frozen=True)
class RedisUsage:
    """What Redis holds for one customer and month: the month counter the quota reads, and the
    calls (per key id, product, ISO day) counted but not yet flushed into Postgres."""

    month_counter: int | None
    unflushed: dict[tuple[int, str, str], int]


def usage_redis_read(*, customer_ids: list[int], day: date) -> dict[int, RedisUsage]:
    """Many customers in one pipeline (one round trip). Read it BEFORE the Postgres totals you
    compare it with: a flush applied in between then shows in Postgres and its in-flight batch,
    now recorded in UsageFlush, is left out here, so nothing is missed or counted twice.
    Raises connection.UNAVAILABLE when Redis cannot be reached."""
    client = connection.redis_client()
    pipe = client.pipeline(transaction=False)
    for customer_id in customer_ids:
        pipe.get(month_counter_key(customer_id=customer_id, day=day))
        pipe.hgetall(connection.customer_key(customer_id, "pending"))
        pipe.hgetall(connection.customer_key(customer_id, "inflight"))
        pipe.zrange(open_calls_key(customer_id=customer_id, day=day), 0, -1)
    replies = pipe.execute()
    quads = [replies[i:i + 4] for i in range(0, len(replies), 4)]
    flush_ids = {inflight[b"__id"].decode() for _, _, inflight, _ in quads if inflight.get(b"__id")}
    applied = set(UsageFlush.objects.filter(flush_id__in=flush_ids).values_list("flush_id", flat=True))
    return {cid: _redis_usage(counter, pending, inflight, applied, opened)
            for cid, (counter, pending, inflight, opened) in zip(customer_ids, quads)}


def _redis_usage(counter, pending: dict, inflight: dict, applied: set[str], opened: list) -> RedisUsage:
    # Calls in progress are in the month counter already; they count as usage until released.
    batches = [pending, open_calls_batch(opened)]
    flush_id = inflight.get(b"__id")
    if flush_id and flush_id.decode() not in applied:
        batches.append(inflight)
    calls: dict[tuple[int, str, str], int] = defaultdict(int)
    for batch in batches:
        for key, value in usage_batch_parse(batch).calls.items():
            calls[key] += value
    return RedisUsage(month_counter=None if counter is None else int(counter), unflushed=dict(calls))


def usage_unseen_bound(*, rate_per_minute: int, day: date, now: datetime) -> int:
    """While Redis is unreachable: at most how many of this month's calls it holds that Postgres
    does not (pending, in flight, open). They were all accepted since the last flush began, and
    the rate limit lets through at most `rate_per_minute` in any minute; one minute more covers
    the flush's own run and calls still open when it took its batches."""
    month_start = datetime.combine(month_bounds(day)[0], time.min, tzinfo=dt_timezone.utc)
    last = UsageFlush.objects.aggregate(last=Max("created_at"))["last"]  # an index-only scan
    since = max(last, month_start) if last else month_start
    minutes = -(-max((now - since).total_seconds(), 0) // 60)
    return rate_per_minute * (int(minutes) + 1)

