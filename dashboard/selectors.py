"""Reads for the customer portal: keys, and usage live to the second with what it will cost."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import Decimal

from django.db.models import Max, Sum
from django.utils import timezone

from accounts.models import ApiKey, Customer
from accounts.selectors import api_keys_for_customer
from billing.models import Invoice, PaymentMethod
from billing.selectors import InvoiceDraft, invoice_compute
from metering import connection
from metering.models import UsageFlush, UsageRecord
from metering.selectors import month_bounds, usage_redis_read
from plans.models import Plan, Product
from plans.pricing import overage_amount as pricing_overage_amount, overage_calls
from plans.selectors import PlanOffer, plan_cheapest_allowing



@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    status: str  # active | expiring | expired | revoked
    expires_at: datetime | None
    calls: int = 0  # the flushed count plus what Redis still holds for the key
    last_used_at: datetime | None = None
    used_since_flush: bool = False  # calls not flushed yet: the key was used within the last minute
    replaced_by: str = ""  # a rotated key: the name of the key that took its place


def key_row(key: ApiKey, now: datetime, unflushed: int = 0) -> KeyRow:
    successor = getattr(key, "rotated_to", None)
    extra = {"calls": key.call_count + unflushed, "last_used_at": key.last_used_at,
             "used_since_flush": unflushed > 0, "replaced_by": successor.name if successor else ""}
    if key.revoked_at is not None:
        return KeyRow(key=key, status="revoked", expires_at=None, **extra)
    if key.expires_at is None:
        return KeyRow(key=key, status="active", expires_at=None, **extra)
    # A rotated key's grace period ends at expires_at; the nightly task then stamps revoked_at.
    status = "expiring" if key.expires_at > now else "expired"
    return KeyRow(key=key, status=status, expires_at=key.expires_at, **extra)


@dataclass(frozen=True)
class KeyTable:
    rows: list[KeyRow]
    live: bool  # False when Redis could not be read: counts as of the last flush
    flushed_at: datetime | None  # the customer's last applied flush

    @property
    def current(self) -> list[KeyRow]:
        return [row for row in self.rows if row.status != "revoked"]

    @property
    def revoked(self) -> list[KeyRow]:
        return [row for row in self.rows if row.status == "revoked"]


def key_table(*, customer: Customer) -> KeyTable:
    """Every key with its calls live to the second: what the minute flush has written to the key
    plus the calls Redis still holds for it (one round trip, read before Postgres)."""
    now = timezone.now()
    unflushed = _redis_unflushed(customer.pk, now.date())
    per_key: dict[int | None, int] = defaultdict(int)
    for (key_id, _product, _day), calls in (unflushed or {}).items():
        per_key[key_id] += calls
    keys = api_keys_for_customer(customer=customer).select_related("rotated_to")
    flushed_at = UsageFlush.objects.filter(customer=customer).aggregate(at=Max("created_at"))["at"]
    rows = [key_row(key, now, per_key.get(key.pk, 0)) for key in keys]
    return KeyTable(rows=rows, live=unflushed is not None, flushed_at=flushed_at)


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
    extra = overage_calls(calls=calls, included_calls=plan.included_calls, hard_cap=plan.hard_cap)
    return pricing_overage_amount(calls=extra, unit_price=plan.overage_price)


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


@dataclass(frozen=True)
class TrialNotice:
    """What a customer in a trial is told on every portal page."""

    ends_at: datetime
    plan_name: str
    has_card: bool
    fallback_plan_name: str  # where the customer goes without a card (the default plan)

    @property
    def text(self) -> str:
        when = f"{self.ends_at:%-d %B %Y}"
        if self.has_card:
            return f"Your {self.plan_name} trial ends on {when}. Your card is on file, so you stay on {self.plan_name}."
        return (f"Your {self.plan_name} trial ends on {when}. Add a card to stay on {self.plan_name}; "
                f"without one you move to the {self.fallback_plan_name} plan.")


def trial_notice(*, customer: Customer) -> TrialNotice | None:
    """Mirrors billing.services.trial_end: a card keeps the plan, else the default plan."""
    if customer.status != Customer.Status.TRIAL or customer.trial_ends_at is None:
        return None
    fallback = Plan.objects.filter(is_default=True).first()
    return TrialNotice(
        ends_at=customer.trial_ends_at, plan_name=customer.plan.name,
        has_card=PaymentMethod.objects.filter(customer=customer).exists(),
        fallback_plan_name=fallback.name if fallback else customer.plan.name,
    )


@dataclass(frozen=True)
class LockedProduct:
    slug: str
    name: str
    cheapest_plan: PlanOffer | None  # the cheapest public plan that includes it


def products_locked(*, plan: Plan) -> list[LockedProduct]:
    """Products the customer's plan does not include, each with the cheapest plan that does
    (the same suggestion the API's 403 answer makes)."""
    return [
        LockedProduct(slug=slug, name=name, cheapest_plan=plan_cheapest_allowing(product=slug))
        for slug, name in Product.choices if not plan.allows(slug)
    ]
