"""The names of a customer's metering keys in Redis and the fields of its pending-usage hash:
written by the Lua scripts (names built here), read by the flush, the month counter's rebuild
and /v1/usage. One place knows the format."""
from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta

from core.periods import period_bounds, period_of

from .connection import customer_key

# Far beyond the minute flush: pending usage survives a flush that cannot run for days.
PENDING_TTL_SECONDS = 7 * 86400


def usage_field(*, day: date, product: str, key_id: int) -> str:
    return f"d|{day.isoformat()}|{product}|{key_id}"


def usage_month_prefix(*, day: date) -> str:
    """What every usage field of `day`'s month starts with (month_seed.lua sums them)."""
    return f"d|{day:%Y-%m}-"


def last_used_field(*, key_id: int) -> str:
    return f"t|{key_id}"


@dataclass
class UsageBatch:
    """A usage hash, parsed: calls per (key id, product, ISO day) and last use per key (epoch s)."""

    calls: dict[tuple[int, str, str], int] = field(default_factory=dict)
    last_used: dict[int, int] = field(default_factory=dict)


def usage_batch_parse(raw: dict) -> UsageBatch:
    """Parse HGETALL output (bytes or str); unknown fields such as the flush id are skipped."""
    batch = UsageBatch()
    for name, value in raw.items():
        parts = (name.decode() if isinstance(name, bytes) else name).split("|")
        if parts[0] == "d" and len(parts) == 4:
            key = (int(parts[3]), parts[2], parts[1])
            batch.calls[key] = batch.calls.get(key, 0) + int(value)
        elif parts[0] == "t" and len(parts) == 2:
            batch.last_used[int(parts[1])] = int(value)
    return batch


def open_member(*, field: str, member: str) -> str:
    """A call in progress in the open-calls zset: its usage field, so readers can tell its
    product and day, and its unique member, so two calls never collide."""
    return f"{field}#{member}"


def open_member_field(open_member_: str) -> str:
    return open_member_.rpartition("#")[0]


def month_counter_key(*, customer_id: int, day: date) -> str:
    """The month's call count the quota and spend cap read: billed plus open calls."""
    return customer_key(customer_id, f"m:{day:%Y%m}")


def month_counter_ttl(*, day: date) -> int:
    """Seconds to keep the month's counter: well past the month's end, since late flushes and
    the reconciliation read it."""
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    return (days_in_month - day.day + 40) * 86400


def open_calls_key(*, customer_id: int, day: date) -> str:
    """Calls accepted in that month and not answered yet (one zset per month, so a release
    gives the place back to the month the call was counted in)."""
    return customer_key(customer_id, f"open:{day:%Y%m}")


def open_calls_keys(*, customer_id: int, day: date) -> list[tuple[str, str]]:
    """(open calls zset, month counter) for this month and the previous one: a call opened just
    before midnight on the last day of a month is released into that month."""
    previous = period_bounds(period_of(day))[0] - timedelta(days=1)
    return [(open_calls_key(customer_id=customer_id, day=d), month_counter_key(customer_id=customer_id, day=d))
            for d in (day, previous)]


def open_member_units(open_member_: str) -> int:
    """Month units an open member holds: 1 for a call, `*<units>` for a quota lease (metering/leases.py)."""
    _, star, units = open_member_.rpartition("#")[2].rpartition("*")
    return int(units) if star else 1


def open_calls_batch(members: list) -> dict[str, int]:
    """Open-call members (ZRANGE output) as a usage hash, for usage_batch_parse."""
    batch: dict[str, int] = {}
    for member in members:
        name = member.decode() if isinstance(member, bytes) else member
        usage = open_member_field(name)
        batch[usage] = batch.get(usage, 0) + open_member_units(name)
    return batch


def flush_generation_key(*, customer_id: int) -> str:
    """Raised whenever the customer's Postgres usage may have changed (a flush took or applied a
    batch): cached Postgres totals carry the generation they were read at."""
    return customer_key(customer_id, "flushgen")


def usage_cache_key(*, customer_id: int, day: date) -> str:
    return customer_key(customer_id, f"usagepg:{day:%Y%m}")
