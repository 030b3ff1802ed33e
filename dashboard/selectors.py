"""Reads for the customer portal: keys, and usage live to the second with what it will cost."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Max, Sum
from django.utils import timezone

from accounts.models import ApiKey, Customer
from accounts.selectors import api_keys_for_customer
from billing.models import Invoice, PaymentMethod
from billing.rating import Rating, Run, period_days, rate
from billing.selectors import LiveUsage, credit_balance, projected_calls, spend_caps, terms_by_id, usage_live
from core.periods import period_bounds
from metering import connection
from metering.models import UsageFlush, UsageRecord
from metering.selectors import usage_redis_read
from plans.models import Plan, Terms
from plans.selectors import PlanOffer, plan_cheapest_allowing, product_names, products_all_cached


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


@dataclass(frozen=True)
class KeyUsage:
    key_id: int | None
    name: str
    masked: str
    calls: int
    active: bool = False


@dataclass(frozen=True)
class TrialSpan:
    """Consecutive trial days of the period: their calls are free and count toward no allowance."""

    name: str  # the plan tried
    first: date
    last: date
    calls: int

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class PortalUsage:
    """This period live (Postgres plus unflushed Redis counts), rated by the invoice's own code
    (billing.rating), the last 90 days, and the projection."""

    period: str
    start: date
    end: date
    live_usage: LiveUsage
    live: bool  # False when Redis could not be read: Postgres figures only
    days: tuple[tuple[date, int], ...]
    recent_days: tuple[date, ...]
    recent_by_product: dict[str, tuple[int, ...]]
    per_key: tuple[KeyUsage, ...]
    projected: Rating | None  # None: less than a day of billable data, nothing true to project
    trials: tuple[TrialSpan, ...]

    @property
    def rating(self) -> Rating:
        return self.live_usage.rating

    @property
    def terms(self) -> Terms:
        return self.live_usage.terms_now

    @property
    def runs(self) -> tuple[Run, ...]:
        return self.rating.runs

    @property
    def current(self) -> Run | None:
        """The run today belongs to, or during a trial the one after it."""
        usage = self.live_usage
        return usage.current or next((run for run in self.runs if run.first > usage.today), None)

    @property
    def calls(self) -> int:
        return self.live_usage.month_calls

    @property
    def billable_calls(self) -> int:
        return self.rating.calls

    @property
    def trial_calls(self) -> int:
        return self.rating.trial_calls

    @property
    def unflushed(self) -> int:
        return self.live_usage.unflushed

    @property
    def included(self) -> int:
        return self.live_usage.included

    @property
    def remaining(self) -> int:
        return self.live_usage.remaining

    @property
    def overage_calls(self) -> int:
        return self.live_usage.overage_calls

    @property
    def overage_so_far(self) -> Decimal:
        return self.rating.overage

    @property
    def projected_calls(self) -> int | None:
        return self.projected.calls if self.projected else None

    @property
    def percent_used(self) -> int:
        """Of the included calls of the run today belongs to."""
        run = self.current
        if run is None or not run.allowance:
            return 0
        return min(round(run.calls * 100 / run.allowance), 100)

    @property
    def products(self) -> list[tuple[str, int]]:
        """(display name, calls) per product this period, busiest first."""
        labels = product_names()
        by_product = self.live_usage.by_product
        return sorted(((labels.get(p, p), n) for p, n in by_product.items() if n), key=lambda r: -r[1])

    @property
    def recent_totals(self) -> list[tuple[str, int]]:
        labels = product_names()
        rows = ((labels.get(p, p), sum(v)) for p, v in self.recent_by_product.items())
        return sorted((row for row in rows if row[1]), key=lambda r: -r[1])


RECENT_DAYS = 90


def _redis_unflushed(customer_id: int, today: date) -> dict[tuple[int, str, str], int] | None:
    """Counts not yet flushed, one Redis round trip; None when Redis cannot be read."""
    node_key = connection.customer_key(customer_id, "ver")  # on a cluster: its primary's breaker
    if connection.redis_is_marked_down(node_key):
        return None
    try:
        return usage_redis_read(customer_ids=[customer_id], day=today)[customer_id].unflushed
    except connection.UNAVAILABLE:
        connection.redis_mark_down(node_key)
        return None


def _usage_cells(customer: Customer, first: date, today: date) -> tuple[dict, bool]:
    """(key id, product, day) -> calls since `first`: flushed rows plus what Redis still holds.
    Redis is read first (see metering.selectors.usage_redis_read)."""
    unflushed = _redis_unflushed(customer.pk, today)
    cells: dict[tuple[int | None, str, date], int] = defaultdict(int)
    rows = UsageRecord.objects.filter(customer=customer, day__gte=first, day__lte=today)
    for key_id, product, day, calls in rows.values_list("api_key_id", "product", "day").annotate(n=Sum("calls")).order_by():
        cells[(key_id, product, day)] += calls
    for (key_id, product, day_iso), calls in (unflushed or {}).items():
        day = date.fromisoformat(day_iso)
        if first <= day <= today:
            cells[(key_id, product, day)] += calls
    return cells, unflushed is not None


def _tally(cells: dict, start: date, recent_first: date, entitlements: list[str]) -> tuple[dict, dict]:
    """This period by key; the recent days by product (one row per product the terms offer, so
    the 90-day chart keeps its lines)."""
    by_key = defaultdict(int)
    recent = {p: [0] * RECENT_DAYS for p in entitlements}
    for (key_id, product, day), calls in cells.items():
        if day >= start:
            by_key[key_id] += calls
        if day >= recent_first:
            recent.setdefault(product, [0] * RECENT_DAYS)[(day - recent_first).days] += calls
    return by_key, recent


def _terms_rated(usage: LiveUsage) -> dict[int, Terms]:
    """The terms of the period's days: the runs' and today's are at hand; a trial day's may need a read."""
    known = {run.terms.pk: run.terms for run in usage.rating.runs}
    known[usage.terms_now.pk] = usage.terms_now
    missing = {day.terms_id for day in usage.rating.trial_days} - known.keys()
    return {**known, **terms_by_id(missing)} if missing else known


def _trial_spans(usage: LiveUsage, terms: dict[int, Terms]) -> tuple[TrialSpan, ...]:
    spans: list[TrialSpan] = []
    for day in usage.rating.trial_days:
        calls, last = usage.by_day.get(day.day, 0), spans[-1] if spans else None
        if last and last.last + timedelta(days=1) == day.day and last.name == terms[day.terms_id].name:
            spans[-1] = TrialSpan(last.name, last.first, day.day, last.calls + calls)
        else:
            spans.append(TrialSpan(terms[day.terms_id].name, day.day, day.day, calls))
    return tuple(spans)


def usage_projected(*, customer: Customer, usage: LiveUsage, terms: dict[int, Terms], now: datetime) -> Rating | None:
    """The period's invoice if calls go on at the rate of the billable time so far: the live
    rating with billing.selectors.projected_calls added, rated again by billing.rating (with the
    customer's credit and hard-stop cap, as the month close bills it). None while less than a
    whole day of billable time has passed (right after signup or a trial's end)."""
    history, period = usage.history, usage.rating.period
    future = projected_calls(rating_days=period_days(period=period, history=history), daily=usage.by_day,
                             history=history, now=now)
    if future is None:
        return None
    calls = dict(usage.by_day)
    for day, count in future.items():
        calls[day] = calls.get(day, 0) + count
    return rate(customer_id=customer.pk, period=period, history=history, terms=terms, daily_calls=calls,
                credit_balance=credit_balance(customer_id=customer.pk),
                spend_cap=spend_caps(customer_ids=[customer.pk], at=now).get(customer.pk))


def portal_usage(*, customer: Customer, now: datetime | None = None) -> PortalUsage:
    now = now or timezone.now()
    today = now.date()
    usage = usage_live(customer=customer, now=now)
    start, end = period_bounds(usage.rating.period)
    recent_first = today - timedelta(days=RECENT_DAYS - 1)
    cells, live = _usage_cells(customer, min(start, recent_first), today)
    by_key, recent = _tally(cells, start, recent_first, usage.terms_now.entitlements)
    month_days = (start + timedelta(days=i) for i in range((end - start).days))
    terms = _terms_rated(usage)
    return PortalUsage(
        period=usage.rating.period, start=start, end=end, live_usage=usage, live=live,
        days=tuple((day, usage.by_day.get(day, 0)) for day in month_days),
        recent_days=tuple(recent_first + timedelta(days=i) for i in range(RECENT_DAYS)),
        recent_by_product={p: tuple(v) for p, v in recent.items()},
        per_key=_key_usage(customer, by_key), projected=usage_projected(customer=customer, usage=usage, terms=terms, now=now),
        trials=_trial_spans(usage, terms),
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
    """Mirrors billing.subscriptions.trial_end: a card keeps the plan, else the default plan."""
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


def products_locked(*, terms: Plan | Terms) -> list[LockedProduct]:
    """Products the customer's terms do not include (the API enforces the terms, not the live
    plan), each with the cheapest plan that does (the same suggestion the API's 403 answer makes)."""
    return [
        LockedProduct(slug=p.slug, name=p.name, cheapest_plan=plan_cheapest_allowing(product=p.slug))
        for p in products_all_cached().values() if p.active and not terms.allows(p.slug)
    ]
