"""Reads of usage: Postgres totals, plus what Redis holds that has not been flushed yet."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from django.db.models import Sum

from . import connection
from .models import UsageFlush, UsageRecord
from .usage_fields import usage_batch_parse


def month_bounds(day: date) -> tuple[date, date]:
    start = day.replace(day=1)
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, end


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


def usage_summary(*, customer_id: int, day: date) -> UsageSummary:
    """This month's calls: flushed rows plus the counters still waiting in Redis."""
    start, end = month_bounds(day)
    products: dict[str, int] = defaultdict(int)
    days: dict[str, int] = defaultdict(int)
    rows = UsageRecord.objects.filter(customer_id=customer_id, day__gte=start, day__lt=end)
    for row in rows.values("product", "day").annotate(calls=Sum("calls")):
        products[row["product"]] += row["calls"]
        days[row["day"].isoformat()] += row["calls"]
    unflushed = 0
    for product, day_iso, calls in _unflushed(customer_id):
        if start.isoformat() <= day_iso < end.isoformat():
            products[product] += calls
            days[day_iso] += calls
            unflushed += calls
    return UsageSummary(
        period=f"{start:%Y-%m}", calls=sum(products.values()), by_product=dict(products),
        by_day=dict(sorted(days.items())), unflushed=unflushed,
    )


def _unflushed(customer_id: int) -> list[tuple[str, str, int]]:
    if connection.redis_is_marked_down():
        return []
    try:
        client = connection.redis_client()
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(connection.customer_key(customer_id, "pending"))
        pipe.hgetall(connection.customer_key(customer_id, "inflight"))
        pending, inflight = pipe.execute()
    except connection.UNAVAILABLE:
        connection.redis_mark_down()
        return []
    batches = [pending]
    flush_id = inflight.get(b"__id")
    if flush_id and not UsageFlush.objects.filter(flush_id=flush_id.decode()).exists():
        batches.append(inflight)
    return [(product, day, calls) for batch in batches
            for (_, product, day), calls in usage_batch_parse(batch).calls.items()]
