"""Reads for the customer portal: keys, and usage live to the second with what it will cost."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Sum
from django.utils import timezone

from accounts.models import ApiKey, Customer
from accounts.selectors import api_keys_for_customer
from billing.models import Invoice
from billing.selectors import InvoiceDraft, invoice_compute
from metering import connection
from metering.models import UsageRecord
from metering.selectors import month_bounds, usage_redis_read
from plans.models import Plan, Product

CENT = Decimal("0.01")


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    status: str  # active | expiring | expired | revoked
    expires_at: datetime | None


def key_row(key: ApiKey, now: datetime) -> KeyRow:
    if key.revoked_at is not None:
        return KeyRow(key=key, status="revoked", expires_at=None)
    if key.expires_at is None:
        return KeyRow(key=key, status="active", expires_at=None)
    # A rotated key's grace period ends at expires_at; the nightly task then stamps revoked_at.
    return KeyRow(key=key, status="expiring" if key.expires_at > now else "expired", expires_at=key.expires_at)


def key_rows(*, customer: Customer) -> list[KeyRow]:
    now = timezone.now()
    return [key_row(key, now) for key in api_keys_for_customer(customer=customer)]


def usage_projection(*, calls: int, start: datetime, now: datetime, end: datetime) -> int:
    """Calls by `end` if they keep coming at the rate seen since `start` (whole calls, rounded down)."""
    elapsed = now - start
    if now >= end or elapsed <= timedelta(0):
        return calls
    whole = end - start
    return calls * (whole // timedelta(microseconds=1)) // (elapsed // timedelta(microseconds=1))


def overage_amount(*, plan: Plan, calls: int) -> Decimal:
    """Calls beyond the included ones at the plan's overage price, half-up to cents (DESIGN §6);
    hard-capped plans never bill overage."""
    if plan.hard_cap or not plan.overage_price or calls <= plan.included_calls:
        return Decimal("0.00")
    extra = max(calls - plan.included_calls, 0)
    return (extra * plan.overage_price).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class KeyUsage:
    key_id: int | None
    name: str
    masked: str
    calls: int
    active: bool = False


@dataclass(frozen=True)
class PortalUsage:
    """This period live (Postgres plus unflushed Redis counts), the last 90 days, and the money."""

    period: str
    start: date
    end: date
    calls: int
    billable_calls: int  # calls made on trial days are free (DESIGN §6)
    unflushed: int
    live: bool  # False when Redis could not be read: Postgres figures only
    included: int
    days: tuple[tuple[date, int], ...]
    by_product: dict[str, int]
    recent_days: tuple[date, ...]
    recent_by_product: dict[str, tuple[int, ...]]
    per_key: tuple[KeyUsage, ...]
    projected_calls: int
    overage_so_far: Decimal
    projected: InvoiceDraft | None

    @property
    def remaining(self) -> int:
        return max(self.included - self.calls, 0)

    @property
    def overage_calls(self) -> int:
        return max(self.calls - self.included, 0)

    @property
    def percent_used(self) -> int:
        if not self.included:
            return 0
        return min(round(self.calls * 100 / self.included), 100)

    @property
    def products(self) -> list[tuple[str, int]]:
        """(display name, calls) per product this period, busiest first."""
        labels = dict(Product.choices)
        return sorted(((labels.get(p, p), n) for p, n in self.by_product.items() if n), key=lambda r: -r[1])

    @property
    def recent_totals(self) -> list[tuple[str, int]]:
        labels = dict(Product.choices)
        rows = ((labels.get(p, p), sum(v)) for p, v in self.recent_by_product.items())
        return sorted((row for row in rows if row[1]), key=lambda r: -r[1])


RECENT_DAYS = 90


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=dt_timezone.utc)


def first_billable_day(*, created_at: datetime, trial_ends_at: datetime | None, start: date) -> date:
    """The first day of the period whose calls are billed: as billing counts them, a day whose
    start (or the signup, that day) falls inside the trial is a trial day."""
    if trial_ends_at is None or trial_ends_at <= created_at:
        return start
    last_trial_day = (trial_ends_at - timedelta(microseconds=1)).astimezone(dt_timezone.utc).date()
    return max(start, last_trial_day + timedelta(days=1))


def _redis_unflushed(customer_id: int, today: date) -> dict[tuple[int, str, str], int] | None:
    """Counts not yet flushed, one Redis round trip; None when Redis cannot be read."""
    if connection.redis_is_marked_down():
        return None
    try:
        return usage_redis_read(customer_ids=[customer_id], day=today)[customer_id].unflushed
    except connection.UNAVAILABLE:
        connection.redis_mark_down()
        return None


def _usage_cells(customer: Customer, first: date, today: date) -> tuple[dict, int, bool]:
    """(key id, product, day) -> calls since `first`: flushed rows plus what Redis still holds.
    Redis is read first (see metering.selectors.usage_redis_read)."""
    unflushed = _redis_unflushed(customer.pk, today)
    cells: dict[tuple[int | None, str, date], int] = defaultdict(int)
    rows = UsageRecord.objects.filter(customer=customer, day__gte=first, day__lte=today)
    for key_id, product, day, calls in rows.values_list("api_key_id", "product", "day").annotate(n=Sum("calls")).order_by():
        cells[(key_id, product, day)] += calls
    extra = 0
    for (key_id, product, day_iso), calls in (unflushed or {}).items():
        day = date.fromisoformat(day_iso)
        if first <= day <= today:
            cells[(key_id, product, day)] += calls
            extra += calls
    return cells, extra, unflushed is not None


def billable_projection(*, created_at: datetime, start: date, end: date, billable_from: date,
                        calls: int, billable: int, now: datetime) -> int:
    """Billable calls by the end of the period at the current rate. While the trial still runs,
    the rate seen so far is carried over the billable days still to come."""
    rate_from = max(day_start(billable_from), created_at)
    if now >= rate_from:
        return usage_projection(calls=billable, start=rate_from, now=now, end=day_start(end))
    seen = now - max(day_start(start), created_at)
    if seen <= timedelta(0) or rate_from >= day_start(end):
        return 0
    return calls * ((day_start(end) - rate_from) // timedelta(microseconds=1)) // (seen // timedelta(microseconds=1))


def _tally(cells: dict, start: date, recent_first: date, entitlements: list[str]) -> tuple[dict, dict, dict, dict]:
    """This period by day, by product and by key; the recent days by product (one row per
    product the plan offers, so the 90-day chart keeps its lines)."""
    days, by_product, by_key = defaultdict(int), defaultdict(int), defaultdict(int)
    recent = {p: [0] * RECENT_DAYS for p in entitlements}
    for (key_id, product, day), calls in cells.items():
        if day >= start:
            days[day] += calls
            by_product[product] += calls
            by_key[key_id] += calls
        if day >= recent_first:
            recent.setdefault(product, [0] * RECENT_DAYS)[(day - recent_first).days] += calls
    return days, by_product, by_key, recent


def portal_usage(*, customer: Customer, now: datetime | None = None) -> PortalUsage:
    now = now or timezone.now()
    today = now.date()
    start, end = month_bounds(today)
    first = min(start, today - timedelta(days=RECENT_DAYS - 1))
    cells, unflushed, live = _usage_cells(customer, first, today)
    recent_first = today - timedelta(days=RECENT_DAYS - 1)
    recent_days = tuple(recent_first + timedelta(days=i) for i in range(RECENT_DAYS))
    days, by_product, by_key, recent = _tally(cells, start, recent_first, customer.plan.entitlements)
    calls = sum(days.values())
    billable_from = first_billable_day(created_at=customer.created_at, trial_ends_at=customer.trial_ends_at, start=start)
    billable = sum(n for day, n in days.items() if day >= billable_from)
    projected_calls = billable_projection(created_at=customer.created_at, start=start, end=end,
                                          billable_from=billable_from, calls=calls, billable=billable, now=now)
    return PortalUsage(
        period=f"{start:%Y-%m}", start=start, end=end, calls=calls, billable_calls=billable,
        unflushed=unflushed, live=live, included=customer.plan.included_calls,
        days=tuple((start + timedelta(days=i), days.get(start + timedelta(days=i), 0)) for i in range((end - start).days)),
        by_product=dict(by_product), recent_days=recent_days,
        recent_by_product={p: tuple(v) for p, v in recent.items()},
        per_key=_key_usage(customer, by_key), projected_calls=projected_calls,
        overage_so_far=overage_amount(plan=customer.plan, calls=billable),
        projected=invoice_compute(customer=customer, period=f"{start:%Y-%m}", calls=projected_calls),
    )


def _key_usage(customer: Customer, by_key: dict[int | None, int]) -> tuple[KeyUsage, ...]:
    """Every key that called this period or is still live, busiest first."""
    rows = []
    for key in api_keys_for_customer(customer=customer):
        calls = by_key.pop(key.pk, 0)
        if calls or key.is_active():
            rows.append(KeyUsage(key.pk, key.name, key.masked, calls, key.is_active()))
    leftover = sum(by_key.values())
    if leftover:
        rows.append(KeyUsage(None, "Deleted keys", "", leftover))
    return tuple(sorted(rows, key=lambda r: -r.calls))


def invoices_recent(*, customer: Customer, limit: int = 6) -> list[Invoice]:
    return list(Invoice.objects.filter(customer=customer).exclude(status=Invoice.Status.DRAFT)
                .order_by("-period", "-pk")[:limit])
