"""The hot path: one atomic Lua call rate-limits, enforces the caps and reserves a call.

Billing follows the answer (README "The metered API"). The script takes the call's place in the
rate window and the month counter and records it as open; once the answer is written out (the
response's close()), a 2xx is billed (its
commit joins the batcher's queue, sent off the request path: metering/batcher.py) and anything
else is released at once (a second round trip, for non-2xx answers only). A call whose worker
died before answering stays open until the flush releases it, unbilled.

Far from every limit the script also grants a quota lease (METERING_LEASES, metering/leases.py):
the process admits the next calls of the key under it with no Redis command, and the committer
thread closes it (bills the calls answered 2xx, gives the rest back) within METERING_LEASE_MS.

When Redis cannot be reached the API fails open (Kong's `fault_tolerant`): calls are counted
straight into Postgres and the per-minute limit is not enforced until Redis is back.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from datetime import date, datetime, timezone as dt_timezone
from typing import Callable

from django.conf import settings
from django.utils import timezone

from . import connection, leases, testmode
from .batcher import commit_later, committer_wake
from .events import usage_threshold_crossed
from .keyconfig import KeyConfig, key_config_reload
from .selectors import month_bounds, usage_month_total, usage_unseen_bound
from .services import customer_counted_in_postgres, month_counter_seed, usage_add
from .usage_fields import month_counter_key, open_calls_key, open_member, usage_field

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000
OPEN_TTL_SECONDS = 2 * 86400
MAX_RELOADS = 3


class Outcome:
    OK = 0
    RATE_LIMITED = 1
    QUOTA_EXCEEDED = 2
    SPEND_CAP = 3
    NOT_ENTITLED = 4
    TEST_DAY_LIMIT = 5  # a test key's calls of the day are used up (metering/testmode.py)
    STALE = -1
    NEEDS_SEED = -2


class MeteringUnavailable(Exception):
    """Redis is down and METERING_FAIL_OPEN is off."""


@dataclass(slots=True)  # not frozen: one is built per call, and a frozen one's __init__ costs 3x
class MeterResult:
    outcome: int
    config: KeyConfig
    rate_limit: int
    rate_remaining: int
    rate_reset_seconds: int
    quota_limit: int
    quota_remaining: int
    retry_after: int
    # What settling needs to bill or release exactly this call.
    store: str  # "redis" or "postgres"
    field: str
    product: str
    day: date
    month_calls: int = 0
    open_member: str = ""
    lease: leases.Lease | None = None  # admitted under this quota lease (settled through it)

    @property
    def allowed(self) -> bool:
        return self.outcome == Outcome.OK


def meter_call(
    *, config: KeyConfig, raw_key: str, product: str,
    revalidate: Callable[[KeyConfig | None], KeyConfig], lease: bool = True,
) -> MeterResult:
    """Meter one call. `revalidate` re-checks a reloaded config and raises if it now fails.
    With `lease` false the call is metered alone, with an open member of its own (the verify
    API's calls settled later need one)."""
    if config.test:
        return _meter_test(config, raw_key, product, timezone.now(), revalidate)
    result = None
    # After an outage this process first runs its recovery (core.redis); if Redis is gone
    # again the call is metered in Postgres. On a cluster: the breaker of the customer's primary.
    node_key = connection.customer_key(config.customer_id, "ver")
    if connection.redis_usable(node_key):
        try:
            result = _meter_in_redis(config, raw_key, product, revalidate, lease and settings.METERING_LEASES)
        except connection.UNAVAILABLE:
            connection.redis_mark_down(node_key)
            # Redis failed under this very call: the config it brought may predate the outage.
            config = revalidate(key_config_reload(raw_key))
    if result is None:
        result = _meter_in_postgres(revalidate(config), product, timezone.now())
    if result.allowed and result.config.alert_at and result.lease is None:
        # A lease never spans an alert threshold (lease.lua): the call reaching one is metered alone.
        _thresholds_announce(result)
    return result


def meter_settle(*, result: MeterResult, status_code: int) -> None:
    """Bill a call answered 2xx; release any other answer (README "The metered API": billing follows the answer)."""
    if not result.allowed or result.store == "test":
        return  # a test call was counted when accepted and is never billed
    if result.lease is not None:
        leases.lease_settle(result.lease, billed=200 <= status_code < 300)
        return
    if 200 <= status_code < 300:
        if result.store == "redis":
            commit_later(customer_id=result.config.customer_id, day=result.day, open_member=result.open_member,
                         field=result.field, key_id=result.config.key_id)
        return
    meter_refund(result)


def meter_settle_when_sent(*, result: MeterResult, response) -> None:
    """Settle the call once its answer has been written out: the WSGI server calls the response's
    close() after the last write (the test client, after rendering). A worker that dies before
    that bills nothing; the open call it leaves is released, unbilled, by the flush."""
    close = response.close

    def settle_then_close() -> None:
        try:
            meter_settle(result=result, status_code=response.status_code)
        except Exception:  # close() must finish: the connection and the request's signals depend on it
            logger.exception("settling a metered call failed; the flush releases it unbilled")
        finally:
            close()

    response.close = settle_then_close


def meter_refund(result: MeterResult) -> None:
    """Release an accepted call that was not answered 2xx: not billed, out of the month's count,
    but still in the per-minute window."""
    if not result.allowed or result.store == "test":
        return
    if result.lease is not None:
        leases.lease_settle(result.lease, billed=False)
        return
    if result.store == "postgres":
        usage_add(customer_id=result.config.customer_id, key_id=result.config.key_id,
                  product=result.product, day=result.day, calls=-1)
        return
    cid = result.config.customer_id
    keys = (open_calls_key(customer_id=cid, day=result.day), month_counter_key(customer_id=cid, day=result.day))
    try:
        connection.run_script(connection.redis_client(), "refund", keys, (result.open_member,))
    except connection.UNAVAILABLE:
        # The call stays open: the flush releases it, unbilled, once Redis is back.
        connection.redis_mark_down(keys[0])


def _thresholds_announce(result: MeterResult) -> None:
    if result.store == "redis":
        crossed = [t for t in result.config.alert_at if t == result.month_calls]
    else:
        crossed = [t for t in result.config.alert_at if result.month_calls - 1 < t <= result.month_calls]
    for threshold in crossed:
        usage_threshold_crossed.send(
            sender=MeterResult, customer_id=result.config.customer_id, period=f"{result.day:%Y-%m}",
            threshold_calls=threshold, month_calls=result.month_calls,
        )


def _meter_in_redis(config, raw_key, product, revalidate, leasing: bool) -> MeterResult:
    day = utc_today()
    if not leasing:
        return _meter_in_script(config, raw_key, product, day, revalidate, leasing=False)
    # A lease is the key's, for one product, day and config version (a new version: a new lease).
    key = (config.customer_id, config.version, config.key_id, product, day)
    held, wanted = leases.lease_take(key)
    if held is not None:
        if wanted:  # the lease is half used: ask for the next one now, so no call waits for it
            _lease_ahead(config, product, day, key, wanted)
        return _lease_result(config, *held, product)
    return _meter_in_script(config, raw_key, product, day, revalidate, leasing=True, wanted=wanted,
                            wanted_for=key if wanted > 1 else None)


def _meter_in_script(config, raw_key, product, day, revalidate, *, leasing: bool, wanted: int = 1,
                     wanted_for: tuple | None = None) -> MeterResult:
    """One round trip: meter.lua, or lease.lua when `leasing` (it may grant a lease of up to
    `wanted` calls; `wanted_for` is the key this thread asks a lease for, see leases.lease_take)."""
    client = connection.redis_client()
    member = _member()
    try:
        for _ in range(MAX_RELOADS + 2):
            if not leasing:
                keys, args, field = _call_shape(config, product, day)
                opened = open_member(field=field, member=member)
                reply = connection.run_script(
                    client, "meter", keys, (*args, member, opened, int(product in config.entitlements)))
            else:
                key = (config.customer_id, config.version, config.key_id, product, day)
                if wanted > 1 and wanted_for != key:
                    # The config was reloaded: ask for the new version's lease, if no one else is.
                    if wanted_for is not None:
                        leases.lease_fetch_done(wanted_for)
                    wanted = leases.lease_want(key)
                    wanted_for = key if wanted > 1 else None
                reply, field, opened, sent_at = _lease_ask(client, config, product, day, member, wanted)
                if len(reply) == 7:
                    lease = _lease_hold(config, key, day, field, member, opened, sent_at, reply)
                    wanted_for = None
                    return _lease_result(config, lease, 0, product)
            outcome = reply[0]
            if outcome == Outcome.STALE:
                config = revalidate(key_config_reload(raw_key))
            elif outcome == Outcome.NOT_ENTITLED:
                revalidate(config)  # raises the refusal: the config is current and lacks the product
                raise RuntimeError("a config the meter found not entitled passed revalidation")
            elif outcome == Outcome.NEEDS_SEED:
                # Redis lost the month, it just began, or Redis missed a change or an outage: rebuild
                # the counter from Postgres and what Redis holds unflushed.
                # A cached config may predate what Redis lost: reload it as well.
                config = revalidate(key_config_reload(raw_key))
                month_counter_seed(customer_id=config.customer_id, day=day, version=config.version)
            else:
                return _result(outcome, config, reply, field, product, day, opened)
    finally:
        if wanted_for is not None:
            leases.lease_fetch_done(wanted_for)
    raise RuntimeError("key config kept changing while metering a call")


def _lease_ahead(config: KeyConfig, product: str, day: date, key: tuple, wanted: int) -> None:
    """Ask lease.lua for the key's next lease while its current one still admits (see
    leases.lease_take). Anything but a grant (a limit near, a newer config, Redis gone) takes
    nothing: the call that next finds no lease meters as usual and handles it."""
    granted = False
    try:
        member = _member()
        reply, field, opened, sent_at = _lease_ask(connection.redis_client(), config, product, day, member, wanted,
                                                   ahead=True)
        if len(reply) == 7:
            _lease_hold(config, key, day, field, member, opened, sent_at, reply, ahead=True)
            granted = True
    except connection.UNAVAILABLE:
        connection.redis_mark_down(connection.customer_key(config.customer_id, "ver"))
    finally:
        if not granted:
            leases.lease_fetch_done(key)


def _lease_ask(client, config: KeyConfig, product: str, day: date, member: str, wanted: int, *,
               ahead: bool = False) -> tuple[list, str, str, float]:
    """Send lease.lua for one call, or `ahead` for none: (its reply, the call's usage field, its
    open member, when the script was sent)."""
    keys, args, field = _call_shape(config, product, day)
    opened = open_member(field=field, member=member)
    sent_at = time.monotonic()
    reply = connection.run_script(
        client, "lease", (*keys, connection.customer_key(config.customer_id, "leases")),
        (*args, member, opened, int(product in config.entitlements), wanted, settings.METERING_LEASE_MS,
         _alerts(config), int(ahead)))
    return reply, field, opened, sent_at


def _lease_hold(config: KeyConfig, key: tuple, day: date, field: str, member: str, opened: str, sent_at: float,
                reply: list, *, ahead: bool = False) -> leases.Lease:
    """Hold the lease in lease.lua's reply; the committer thread closes it (metering/batcher.py)."""
    _, limit, remaining, reset_ms, month_calls, units, granted_at = reply
    lease = leases.lease_open(
        key=key, customer_id=config.customer_id, day=day, field=field, key_id=config.key_id, member=member,
        open_member=opened, units=units, sent_at=sent_at, granted_at=granted_at, limit=limit, remaining=remaining,
        reset_ms=reset_ms, month_calls=month_calls, ahead=ahead)
    committer_wake()
    return lease


_today: tuple[float, float, date] = (0.0, 0.0, date.min)  # [start, end) in time.time() seconds, that UTC date


def utc_today() -> date:
    """The UTC date calls are metered under: timezone.now().date() without building a datetime
    per call (its day is kept with its bounds; a clock moved back, as in tests, is seen too)."""
    global _today
    now = time.time()
    start, end, day = _today
    if start <= now < end:
        return day
    day = datetime.fromtimestamp(now, dt_timezone.utc).date()
    start = datetime(day.year, day.month, day.day, tzinfo=dt_timezone.utc).timestamp()
    _today = (start, start + 86400, day)
    return day


def _alerts(config: KeyConfig) -> str:
    return ",".join(str(t) for t in config.alert_at) if config.alert_at else ""


def _lease_result(config: KeyConfig, lease: leases.Lease, index: int, product: str) -> MeterResult:
    """The answer of the call admitted `index`th under `lease`: as if metered alone at the grant."""
    month_calls = lease.month_first + index
    return MeterResult(
        outcome=Outcome.OK, config=config, rate_limit=lease.limit,
        rate_remaining=max(0, lease.remaining + lease.granted - index - 1),
        rate_reset_seconds=max(1, -(-lease.reset_ms // 1000)), quota_limit=config.included_calls,
        quota_remaining=max(0, config.included_calls - month_calls), retry_after=0, store="redis",
        field=lease.field, product=product, day=lease.day, month_calls=month_calls, lease=lease,
    )


@lru_cache(maxsize=4096)
def _call_shape(config: KeyConfig, product: str, day: date) -> tuple[tuple, tuple, str]:
    """Key names and fixed arguments of the meter script: the same for every call of a
    key, product and day, so the hot path builds them once, not per request."""
    cid = config.customer_id
    field = usage_field(day=day, product=product, key_id=config.key_id)
    keys = (connection.customer_key(cid, "rl"), month_counter_key(customer_id=cid, day=day),
            open_calls_key(customer_id=cid, day=day), connection.customer_key(cid, "ver"))
    ceiling = -1 if config.call_ceiling is None else config.call_ceiling
    args = (config.version, config.rate_per_minute, WINDOW_MS, config.included_calls, int(config.hard_cap),
            ceiling, OPEN_TTL_SECONDS)
    return keys, args, field


def _meter_test(config, raw_key, product, now, revalidate) -> MeterResult:
    """A test-mode key's call: its own limits in one round trip, never billed. Without Redis it
    is refused (503): test calls have no Postgres count to fall back on."""
    node_key = connection.customer_key(config.customer_id, "ver")
    if not connection.redis_usable(node_key):
        raise MeteringUnavailable()
    client = connection.redis_client()
    day = now.date()
    member = _member()
    for _ in range(MAX_RELOADS + 1):
        keys, args = _test_call_shape(config, product, day)
        try:
            reply = connection.run_script(client, "meter_test", keys, (*args, member))
        except connection.UNAVAILABLE:
            connection.redis_mark_down(node_key)
            raise MeteringUnavailable() from None
        outcome = reply[0]
        if outcome == Outcome.STALE:
            config = revalidate(key_config_reload(raw_key))
            continue
        if outcome == Outcome.NOT_ENTITLED:
            revalidate(config)
            raise RuntimeError("a config the meter found not entitled passed revalidation")
        _, limit, remaining, reset_ms, day_calls = reply
        reset = max(1, -(-reset_ms // 1000))
        if outcome == Outcome.OK:
            retry_after = 0
        else:
            retry_after = reset if outcome == Outcome.RATE_LIMITED else testmode.seconds_to_next_day(now)
        return MeterResult(
            outcome=outcome, config=config, rate_limit=limit, rate_remaining=max(0, remaining),
            rate_reset_seconds=reset, quota_limit=testmode.PER_DAY,
            quota_remaining=max(0, testmode.PER_DAY - day_calls), retry_after=retry_after,
            store="test", field="", product=product, day=day,
        )
    raise RuntimeError("key config kept changing while metering a call")


@lru_cache(maxsize=4096)
def _test_call_shape(config: KeyConfig, product: str, day: date) -> tuple[tuple, tuple]:
    cid = config.customer_id
    keys = (testmode.window_key(customer_id=cid), testmode.day_counter_key(customer_id=cid, day=day),
            testmode.usage_key(customer_id=cid, day=day), connection.customer_key(cid, "ver"))
    args = (config.version, testmode.PER_MINUTE, WINDOW_MS, testmode.PER_DAY, int(product in config.entitlements),
            testmode.usage_field(day=day, product=product), testmode.DAY_COUNTER_TTL_SECONDS,
            testmode.usage_ttl(day=day))
    return keys, args


def _new_member_prefix() -> None:
    global _member_prefix
    _member_prefix = os.urandom(6).hex()


_member_prefix = ""
_new_member_prefix()
# Forked workers (gunicorn --preload, Celery) must not share a prefix: members must be unique.
os.register_at_fork(after_in_child=_new_member_prefix)
_member_counter = itertools.count()


def _member() -> str:
    """A unique id for this call in the rate window and among the customer's open calls."""
    return f"{_member_prefix}:{next(_member_counter)}"


def _result(outcome, config, reply, field, product, day, opened) -> MeterResult:
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
        retry_after=retry_after, store="redis", field=field, product=product, day=day,
        month_calls=month_calls, open_member=opened,
    )


def _meter_in_postgres(config: KeyConfig, product: str, now: datetime) -> MeterResult:
    if not settings.METERING_FAIL_OPEN:
        raise MeteringUnavailable()
    day = now.date()
    used = usage_month_total(customer_id=config.customer_id, day=day)
    # Calls Redis still holds unflushed are unknown here: caps count the most there can be.
    unseen = (usage_unseen_bound(rate_per_minute=config.rate_per_minute, day=day, now=now)
              if config.hard_cap or config.call_ceiling is not None else 0)
    base = MeterResult(
        outcome=Outcome.OK, config=config, rate_limit=config.rate_per_minute,
        rate_remaining=config.rate_per_minute, rate_reset_seconds=WINDOW_MS // 1000,
        quota_limit=config.included_calls, quota_remaining=max(0, config.included_calls - used),
        retry_after=0, store="postgres", field=usage_field(day=day, product=product, key_id=config.key_id),
        product=product, day=day,
    )
    if config.hard_cap and used + unseen >= config.included_calls:
        return replace(base, outcome=Outcome.QUOTA_EXCEEDED, retry_after=_seconds_to_next_month(day))
    if config.call_ceiling is not None and used + unseen >= config.call_ceiling:
        return replace(base, outcome=Outcome.SPEND_CAP, retry_after=_seconds_to_next_month(day))
    # Without Redis there is no open state: the call is billed now and refunded if not 2xx.
    # A worker killed mid-call during an outage therefore leaves its call billed (see decisions).
    usage_add(customer_id=config.customer_id, key_id=config.key_id, product=product, day=day, calls=1, last_used=now)
    customer_counted_in_postgres(customer_id=config.customer_id)
    committer_wake()  # its thread runs the recovery this process now owes, even if no call comes
    return replace(base, quota_remaining=max(0, config.included_calls - used - 1), month_calls=used + 1)


def _seconds_to_next_month(day: date) -> int:
    next_month = month_bounds(day)[1]
    start = datetime(next_month.year, next_month.month, 1, tzinfo=dt_timezone.utc)
    return max(1, int((start - timezone.now()).total_seconds()))
