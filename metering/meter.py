"""The hot path: one atomic Lua call rate-limits, enforces the hard cap and counts a call.

When Redis cannot be reached the API fails open (Kong's `fault_tolerant`): calls are counted
straight into Postgres and the per-minute limit is not enforced until Redis is back.
"""
from __future__ import annotations

import calendar
import os
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone as dt_timezone
from typing import Callable

from django.conf import settings
from django.utils import timezone

from . import connection
from .keyconfig import KeyConfig, key_config_reload
from .selectors import usage_month_total

WINDOW_MS = 60_000
PENDING_TTL_SECONDS = 7 * 86400
MAX_RELOADS = 3


class Outcome:
    OK = 0
    RATE_LIMITED = 1
    QUOTA_EXCEEDED = 2
    STALE = -1
    NEEDS_SEED = -2


class MeteringUnavailable(Exception):
    """Redis is down and METERING_FAIL_OPEN is off."""


@dataclass(frozen=True, slots=True)
class MeterResult:
    outcome: int
    config: KeyConfig
    rate_limit: int
    rate_remaining: int
    rate_reset_seconds: int
    quota_limit: int
    quota_remaining: int
    retry_after: int
    # What a refund needs to undo exactly this call.
    store: str  # "redis" or "postgres"
    member: str
    field: str
    day: date

    @property
    def allowed(self) -> bool:
        return self.outcome == Outcome.OK


def meter_call(
    *, config: KeyConfig, raw_key: str, product: str,
    revalidate: Callable[[KeyConfig | None], KeyConfig],
) -> MeterResult:
    """Meter one call. `revalidate` re-checks a reloaded config and raises if it now fails."""
    now = timezone.now()
    if not connection.redis_is_marked_down():
        try:
            return _meter_in_redis(config, raw_key, product, now, revalidate)
        except connection.UNAVAILABLE:
            connection.redis_mark_down()
    return _meter_in_postgres(config, product, now)


def meter_refund(result: MeterResult) -> None:
    """A call answered with 5xx is not billed: take its count back."""
    if not result.allowed:
        return
    if result.store == "postgres":
        from .services import usage_add

        usage_add(customer_id=result.config.customer_id, key_id=result.config.key_id,
                  product=result.field.split("|")[2], day=result.day, calls=-1)
        return
    cid = result.config.customer_id
    try:
        connection.script("refund")(
            keys=[connection.customer_key(cid, "rl"), _month_key(cid, result.day), connection.customer_key(cid, "pending")],
            args=[result.member, result.field],
            client=connection.redis_client(),
        )
    except connection.UNAVAILABLE:
        connection.redis_mark_down()


def _meter_in_redis(config, raw_key, product, now, revalidate) -> MeterResult:
    client = connection.redis_client()
    meter = connection.script("meter")
    day = now.date()
    member = f"{now.timestamp():.6f}:{os.urandom(5).hex()}"
    seed = -1
    for _ in range(MAX_RELOADS + 2):
        field = f"d|{day.isoformat()}|{product}|{config.key_id}"
        cid = config.customer_id
        reply = meter(
            keys=[connection.customer_key(cid, "rl"), _month_key(cid, day),
                  connection.customer_key(cid, "pending"), connection.customer_key(cid, "ver")],
            args=[config.version, config.rate_per_minute, WINDOW_MS, config.included_calls,
                  int(config.hard_cap), seed, field, f"t|{config.key_id}", _month_ttl(now), member,
                  PENDING_TTL_SECONDS],
            client=client,
        )
        outcome = int(reply[0])
        if outcome == Outcome.STALE:
            config = revalidate(key_config_reload(raw_key))
        elif outcome == Outcome.NEEDS_SEED:
            # Redis lost the month (or it just began): resume from the Postgres totals.
            seed = usage_month_total(customer_id=cid, day=day)
        else:
            return _result(outcome, config, reply, field, member, day)
    raise RuntimeError("key config kept changing while metering a call")


def _result(outcome, config, reply, field, member, day) -> MeterResult:
    limit, remaining, reset_ms, month_calls = (int(x) for x in reply[1:5])
    reset = max(1, -(-reset_ms // 1000))
    quota_remaining = max(0, config.included_calls - month_calls)
    retry_after = reset if outcome == Outcome.RATE_LIMITED else _seconds_to_next_month(day)
    return MeterResult(
        outcome=outcome, config=config, rate_limit=limit, rate_remaining=max(0, remaining),
        rate_reset_seconds=reset, quota_limit=config.included_calls, quota_remaining=quota_remaining,
        retry_after=retry_after if outcome != Outcome.OK else 0,
        store="redis", member=member, field=field, day=day,
    )


def _meter_in_postgres(config: KeyConfig, product: str, now: datetime) -> MeterResult:
    if not settings.METERING_FAIL_OPEN:
        raise MeteringUnavailable()
    from .services import usage_add

    day = now.date()
    used = usage_month_total(customer_id=config.customer_id, day=day)
    base = MeterResult(
        outcome=Outcome.OK, config=config, rate_limit=config.rate_per_minute,
        rate_remaining=config.rate_per_minute, rate_reset_seconds=WINDOW_MS // 1000,
        quota_limit=config.included_calls, quota_remaining=max(0, config.included_calls - used),
        retry_after=0, store="postgres", member="", field=f"d|{day.isoformat()}|{product}|{config.key_id}", day=day,
    )
    if config.hard_cap and used >= config.included_calls:
        return replace(base, outcome=Outcome.QUOTA_EXCEEDED, retry_after=_seconds_to_next_month(day))
    usage_add(customer_id=config.customer_id, key_id=config.key_id, product=product, day=day, calls=1, last_used=now)
    return replace(base, quota_remaining=max(0, config.included_calls - used - 1))


def _month_key(customer_id: int, day: date) -> str:
    return connection.customer_key(customer_id, f"m:{day:%Y%m}")


def _month_ttl(now: datetime) -> int:
    # Keep the month's counter well past its end: late flushes and reconciliation read it.
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    return (days_in_month - now.day + 40) * 86400


def _seconds_to_next_month(day: date) -> int:
    first = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    start = datetime(first.year, first.month, 1, tzinfo=dt_timezone.utc)
    return max(1, int((start - timezone.now()).total_seconds()))
