"""Call counts for the staff dashboard: today, this month, per day and product, and per
customer this month, last month and last month to the same day, in two queries (README
"Usage portal and revenue dashboard")."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from django.core.cache import cache
from django.db import connection

from metering import connection as metering_connection
from metering.models import UsageRecord
from metering.selectors import month_bounds
from plans.selectors import product_names

from .figures import month_start

SETTLED_CACHE_SECONDS = 26 * 3600


class CustomerCalls(NamedTuple):  # a tuple: ten thousand are made per page view
    this: int  # this month so far
    last: int  # the whole of last month
    last_to_date: int  # last month's days 1 to today's day of the month (clipped to its length)


NO_CALLS = CustomerCalls(0, 0, 0)


def same_days_last_month(today: date) -> date:
    """The end (exclusive) of last month's days 1..today's day of the month: four days into a
    month compares with last month's first four days, not its whole, and the 31st of March
    with all of February."""
    last_start = month_start(today, 1)
    this_start = month_start(today)
    return min(last_start + timedelta(days=today.day), this_start)


@dataclass(frozen=True)
class CallStats:
    today: int
    this_month: int
    days: tuple[tuple[date, int], ...]
    by_product: tuple[tuple[str, int], ...]
    per_customer: dict[int, CustomerCalls]


# One scan of last month and this one, summed two ways at once (GROUPING SETS): per day and
# product for the charts, per customer for the tables. Which calls are billable is billing's
# rating's call (dashboard.overage), not this query's.
_CALLS_SQL = """
SELECT u.customer_id, u.day, u.product, GROUPING(u.customer_id) = 1 AS per_day,
       SUM(u.calls) AS calls,
       SUM(u.calls) FILTER (WHERE u.day >= %(start)s) AS this,
       SUM(u.calls) FILTER (WHERE u.day >= %(last_start)s AND u.day < %(start)s) AS last,
       SUM(u.calls) FILTER (WHERE u.day >= %(last_start)s AND u.day < %(same_days_end)s) AS last_to_date
FROM {usage} u
WHERE u.day >= %(first)s AND u.day < %(end)s
GROUP BY GROUPING SETS ((u.day, u.product), (u.customer_id))
"""


@dataclass(frozen=True)
class _Sums:
    per_day: dict[tuple[date, str], int]
    per_customer: dict[int, CustomerCalls]


def _usage_sums(*, first: date, until: date, start: date, same_days_end: date) -> _Sums:
    """Usage of the days [first, until), summed by day and product and by customer."""
    per_day: dict[tuple[date, str], int] = {}
    per_customer: dict[int, CustomerCalls] = {}
    if first >= until:
        return _Sums(per_day, per_customer)
    sql = _CALLS_SQL.format(usage=UsageRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, {"start": start, "first": first, "end": until, "last_start": month_start(start, 1),
                             "same_days_end": same_days_end})
        for customer_id, day, product, is_day, calls, this, last, last_to_date in cursor.fetchall():
            if is_day:
                per_day[(day, product)] = int(calls)
            else:
                per_customer[customer_id] = CustomerCalls(int(this or 0), int(last or 0), int(last_to_date or 0))
    return _Sums(per_day, per_customer)


def _settled_sums(*, first: date, until: date, start: date, same_days_end: date) -> _Sums:
    """Days before yesterday no longer change (a flush lands within a minute; the nightly
    reconciliation reports any later change), so their sums are kept for the day in the cache:
    the page then reads only yesterday and today from Postgres, plus this one cache read."""
    key = f"dashboard:usage:v3:{first}:{until}:{start}:{same_days_end}"
    try:
        sums = cache.get(key)
    except metering_connection.UNAVAILABLE:
        # Redis down: slower, still right
        return _usage_sums(first=first, until=until, start=start, same_days_end=same_days_end)
    if sums is None:
        sums = _usage_sums(first=first, until=until, start=start, same_days_end=same_days_end)
        try:
            cache.set(key, sums, timeout=SETTLED_CACHE_SECONDS)
        except metering_connection.UNAVAILABLE:
            pass
    return sums


def call_stats(*, now: datetime) -> CallStats:
    today = now.date()
    start, end = month_bounds(today)
    first = min(month_start(today, 1), today - timedelta(days=29))
    yesterday = today - timedelta(days=1)
    same_days_end = same_days_last_month(today)
    settled = _settled_sums(first=first, until=yesterday, start=start, same_days_end=same_days_end)
    recent = _usage_sums(first=max(first, yesterday), until=today + timedelta(days=1), start=start,
                         same_days_end=same_days_end)
    per_day: dict[date, int] = defaultdict(int)
    per_product: dict[str, int] = defaultdict(int)
    for sums in (settled, recent):
        for (day, product), calls in sums.per_day.items():
            per_day[day] += calls
            if day >= start:
                per_product[product] += calls
    per_customer = dict(settled.per_customer)
    for cid, row in recent.per_customer.items():
        old = per_customer.get(cid, NO_CALLS)
        per_customer[cid] = CustomerCalls(*(a + b for a, b in zip(old, row)))
    labels = product_names()
    days = tuple((today - timedelta(days=29 - i), per_day.get(today - timedelta(days=29 - i), 0)) for i in range(30))
    return CallStats(
        today=per_day.get(today, 0), this_month=sum(n for d, n in per_day.items() if d >= start), days=days,
        by_product=tuple(sorted(((labels.get(p, p), n) for p, n in per_product.items()), key=lambda r: -r[1])),
        per_customer=per_customer,
    )
