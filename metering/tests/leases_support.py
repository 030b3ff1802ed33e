"""Calling lease.lua straight through the real Redis, with the arguments meter.py sends."""
from __future__ import annotations

from django.utils import timezone

from metering import connection
from metering.usage_fields import month_counter_key, open_calls_key

LEASE_MS = 250
FIELD = "d|2026-12-06|geocode|7"


def lua_keys(customer_id: int) -> tuple[str, str, str, str, str]:
    """(window, month counter, open calls, config version, leases) of a customer this month."""
    day = timezone.now().date()
    return (connection.customer_key(customer_id, "rl"), month_counter_key(customer_id=customer_id, day=day),
            open_calls_key(customer_id=customer_id, day=day), connection.customer_key(customer_id, "ver"),
            connection.customer_key(customer_id, "leases"))


def lease_script(client, customer_id: int, *, member: str, version: int = 1, limit: int = 100_000,
                 included: int = 10_000_000, hard_cap: int = 0, ceiling: int = -1, entitled: int = 1,
                 wanted: int = 8, lease_ms: int = LEASE_MS, alerts: str = "") -> list:
    args = (version, limit, 60_000, included, hard_cap, ceiling, 3600, member, f"{FIELD}#{member}", entitled,
            wanted, lease_ms, alerts)
    return connection.run_script(client, "lease", lua_keys(customer_id), args)


def redis_now_ms(client) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def places(client, customer_id: int) -> list[str]:
    return sorted(m.decode() for m in client.zrange(lua_keys(customer_id)[0], 0, -1))
