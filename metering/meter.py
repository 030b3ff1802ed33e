"""The hot path: one atomic Lua call rate-limits, enforces the hard cap and counts a call.

When Redis cannot be reached the API fails open (Kong's `fault_tolerant`): calls are counted
straight into Postgres and the per-minute limit is not enforced until Redis is back.
"""
from __future__ import annotations

import calendar
import itertools
import os
import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from datetime import date, datetime, timezone as dt_timezone
from typing import Callable

from django.conf import settings
from django.utils import timezone

from . import connection
from .keyconfig import KeyConfig, key_config_reload
from .selectors import month_bounds, usage_month_total
from .usage_fields import last_used_field, usage_field

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
    product: str
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
                  product=result.product, day=result.day, calls=-1)
        _note_counted_while_down(result.config.customer_id, result.day, -1)
        return
    cid = result.config.customer_id
    keys = (connection.customer_key(cid, "rl"), _month_key(cid, result.day), connection.customer_key(cid, "pending"))
    try:
        connection.run_script(connection.redis_client(), "refund", keys, (result.member, result.field))
    except connection.UNAVAILABLE:
        connection.redis_mark_down()


def _meter_in_redis(config, raw_key, product, now, revalidate) -> MeterResult:
    client = connection.redis_client()
    if _counted_while_down:
        _sync_counted_while_down(client)
    day = now.date()
    member = _member()
    seed = -1
    for _ in range(MAX_RELOADS + 2):
        keys, args, field = _call_shape(config, product, day)
        reply = connection.run_script(client, "meter", keys, (*args, seed, member))
        outcome = reply[0]
        if outcome == Outcome.STALE:
            config = revalidate(key_config_reload(raw_key))
        elif outcome == Outcome.NEEDS_SEED:
            # Redis lost the month (or it just began): resume from the Postgres totals.
            seed = usage_month_total(customer_id=config.customer_id, day=day)
        else:
            return _result(outcome, config, reply, field, member, product, day)
    raise RuntimeError("key config kept changing while metering a call")


@lru_cache(maxsize=4096)
def _call_shape(config: KeyConfig, product: str, day: date) -> tuple[tuple, tuple, str]:
    """Key names and fixed arguments of the meter script: the same for every call of a
    key, product and day, so the hot path builds them once, not per request."""
    cid = config.customer_id
    field = usage_field(day=day, product=product, key_id=config.key_id)
    keys = (connection.customer_key(cid, "rl"), _month_key(cid, day),
            connection.customer_key(cid, "pending"), connection.customer_key(cid, "ver"))
    args = (config.version, config.rate_per_minute, WINDOW_MS, config.included_calls, int(config.hard_cap),
            field, last_used_field(key_id=config.key_id), _month_ttl(day), PENDING_TTL_SECONDS)
    return keys, args, field


def _new_member_prefix() -> None:
    global _member_prefix
    _member_prefix = os.urandom(6).hex()


_member_prefix = ""
_new_member_prefix()
# Forked workers (gunicorn --preload, Celery) must not share a prefix: members must be unique.
os.register_at_fork(after_in_child=_new_member_prefix)
_member_counter = itertools.count()


def _member() -> str:
    """A unique id for this call in the rate window (refunds remove exactly this one)."""
    return f"{_member_prefix}:{next(_member_counter)}"


def _result(outcome, config, reply, field, member, product, day) -> MeterResult:
    _, limit, remaining, reset_ms, month_calls = reply
    reset = max(1, -(-reset_ms // 1000))
    quota_remaining = max(0, config.included_calls - month_calls)
    if outcome == Outcome.OK:
        retry_after = 0
    else:
        retry_after = reset if outcome == Outcome.RATE_LIMITED else _seconds_to_next_month(day)
    return MeterResult(
        outcome=outcome, config=config, rate_limit=limit, rate_remaining=max(0, remaining),
        rate_reset_seconds=reset, quota_limit=config.included_calls, quota_remaining=quota_remaining,
        retry_after=retry_after,
        store="redis", member=member, field=field, product=product, day=day,
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
        retry_after=0, store="postgres", member="", field=usage_field(day=day, product=product, key_id=config.key_id),
        product=product, day=day,
    )
    if config.hard_cap and used >= config.included_calls:
        return replace(base, outcome=Outcome.QUOTA_EXCEEDED, retry_after=_seconds_to_next_month(day))
    usage_add(customer_id=config.customer_id, key_id=config.key_id, product=product, day=day, calls=1, last_used=now)
    _note_counted_while_down(config.customer_id, day, 1)
    return replace(base, quota_remaining=max(0, config.included_calls - used - 1))


# Calls this process counted straight into Postgres while Redis was down, per month counter.
# A month counter Redis kept through the outage lacks them; they are added when Redis is back,
# so a hard cap counts them too.
_counted_while_down: dict[str, int] = {}
_counted_lock = threading.Lock()


def _note_counted_while_down(customer_id: int, day: date, calls: int) -> None:
    key = _month_key(customer_id, day)
    with _counted_lock:
        _counted_while_down[key] = _counted_while_down.get(key, 0) + calls


def _sync_counted_while_down(client) -> None:
    with _counted_lock:
        pending = dict(_counted_while_down)
        _counted_while_down.clear()
    for key, calls in list(pending.items()):
        try:
            if calls:
                connection.run_script(client, "month_add", (key,), (calls,))
        except connection.UNAVAILABLE:
            # Put back only what was not added, or a retry would add it twice.
            with _counted_lock:
                for unsent_key, unsent in pending.items():
                    _counted_while_down[unsent_key] = _counted_while_down.get(unsent_key, 0) + unsent
            raise
        del pending[key]


def _month_key(customer_id: int, day: date) -> str:
    return connection.customer_key(customer_id, f"m:{day:%Y%m}")


def _month_ttl(day: date) -> int:
    # Keep the month's counter well past its end: late flushes and reconciliation read it.
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    return (days_in_month - day.day + 40) * 86400


def _seconds_to_next_month(day: date) -> int:
    next_month = month_bounds(day)[1]
    start = datetime(next_month.year, next_month.month, 1, tzinfo=dt_timezone.utc)
    return max(1, int((start - timezone.now()).total_seconds()))
