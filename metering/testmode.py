"""Test-mode keys (README "The metered API", test mode): their limits, their Redis keys, and the
portal's read of their usage.

A test key gets the same API and the same answers as a live key, but its calls live only here:
a minute window and a day counter shared by all of the customer's test keys, and a per-month
hash of calls per day and product for the portal. The flush, the month counter, quotas, spend
caps, UsageRecord and invoices never read them.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone as dt_timezone

from django.utils import timezone

from . import connection

PER_MINUTE = 10
PER_DAY = 1_000
DAY_COUNTER_TTL_SECONDS = 2 * 86400
# Kept past the month's end, so the portal still shows last month's test calls for a while.
USAGE_EXTRA_DAYS = 40


def window_key(*, customer_id: int) -> str:
    return connection.customer_key(customer_id, "test:rl")


def day_counter_key(*, customer_id: int, day: date) -> str:
    return connection.customer_key(customer_id, f"test:d:{day:%Y%m%d}")


def usage_key(*, customer_id: int, day: date) -> str:
    return connection.customer_key(customer_id, f"test:u:{day:%Y%m}")


def usage_field(*, day: date, product: str) -> str:
    return f"{day:%d}|{product}"


def usage_ttl(*, day: date) -> int:
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    return (days_in_month - day.day + USAGE_EXTRA_DAYS) * 86400


def seconds_to_next_day(now: datetime) -> int:
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=dt_timezone.utc)
    return max(1, int((tomorrow - now).total_seconds()))


@dataclass(frozen=True)
class ModeCalls:
    """A customer's test calls: today and this month (UTC), per product slug. `available` is False
    when Redis could not be read (the figures are then zero, not known)."""

    today: dict[str, int]
    month: dict[str, int]
    available: bool = True

    @property
    def today_total(self) -> int:
        return sum(self.today.values())

    @property
    def month_total(self) -> int:
        return sum(self.month.values())


def calls_in_test_mode(*, customer_id: int, day: date | None = None) -> ModeCalls:
    day = day or timezone.now().date()
    try:
        raw = connection.redis_client().hgetall(usage_key(customer_id=customer_id, day=day))
    except connection.UNAVAILABLE:
        return ModeCalls(today={}, month={}, available=False)
    today: dict[str, int] = {}
    month: dict[str, int] = {}
    for name, value in raw.items():
        field = name.decode() if isinstance(name, bytes) else name
        day_part, _, product = field.partition("|")
        calls = int(value)
        month[product] = month.get(product, 0) + calls
        if day_part == f"{day:%d}":
            today[product] = today.get(product, 0) + calls
    return ModeCalls(today=today, month=month)
