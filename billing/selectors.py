"""Billing reads. The invoice path is gather (here) → rate (billing.rating, pure) → write (invoicing).

Everything that shows money to a customer or to staff (invoice, portal, /v1/usage, spend cap,
plan-change preview, dashboard) gathers here and rates with the same `billing.rating.rate`.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from cachetools import TTLCache
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Customer
from core.money import ZERO
from core.periods import day_start, period_bounds, period_of
from metering.models import SpendCapChange, UsageRecord
from metering.selectors import usage_summary
from plans.models import Plan, Terms

from .models import CreditEntry, Invoice, InvoiceLine, PlanChange
from .rating import BALANCE_CREDIT, History, Rating, Run, rate

__all__ = [
    "History", "LiveUsage", "PlanChangePreview", "Rating", "Run", "credit_balance", "credit_balances", "histories_by_customer",
    "history_of", "invoice_compute", "invoices_for_customer", "plan_change_preview", "terms_by_id",
    "usage_by_customer_day", "usage_live",
]


def terms_by_id(ids: Iterable[int]) -> dict[int, Terms]:
    return {terms.pk: terms for terms in Terms.objects.filter(pk__in=set(ids))}


def _history(customer_row: tuple, changes: list[tuple]) -> History:
    created_at, signup_terms_id, trial_starts_at, trial_ends_at = customer_row
    return History(created_at=created_at, signup_terms_id=signup_terms_id, trial_starts_at=trial_starts_at,
                   trial_ends_at=trial_ends_at, changes=tuple(changes))


def history_of(*, customer: Customer | int, before: datetime | None = None, upto: datetime | None = None) -> History:
    """The customer's terms over time, from changes made before `before` (a period's end) and no
    later than `upto` (now, for a projection): what was known then, whatever happened since."""
    customer_id = getattr(customer, "pk", customer)
    changes = PlanChange.objects.filter(customer_id=customer_id)
    if before is not None:
        changes = changes.filter(at__lt=before)
    if upto is not None:
        changes = changes.filter(at__lte=upto)
    rows = list(changes.order_by("at", "pk").values_list("at", "terms_id", "reason"))
    # Read from the row, not the caller's object: a copy loaded before a trial started would bill trial days.
    fresh = Customer.objects.values_list("created_at", "signup_terms_id", "trial_started_at", "trial_ends_at").get(pk=customer_id)
    return _history(fresh, rows)


def histories_by_customer(*, customer_ids: list[int], before: datetime) -> dict[int, History]:
    """Two queries: every customer's history before `before` (the month-close batch)."""
    customers = Customer.objects.filter(pk__in=customer_ids).values_list(
        "pk", "created_at", "signup_terms_id", "trial_started_at", "trial_ends_at")
    changes: dict[int, list[tuple]] = defaultdict(list)
    rows = (PlanChange.objects.filter(customer_id__in=customer_ids, at__lt=before)
            .order_by("customer_id", "at", "pk").values_list("customer_id", "at", "terms_id", "reason"))
    for customer_id, *row in rows:
        changes[customer_id].append(tuple(row))
    return {pk: _history(row, changes.get(pk, [])) for pk, *row in customers}


def _history_terms(history: History) -> set[int]:
    return {history.signup_terms_id, *(terms_id for _, terms_id, _ in history.changes)}


def daily_calls(*, customer_id: int, start: date, end: date) -> dict[date, int]:
    rows = (
        UsageRecord.objects.filter(customer_id=customer_id, day__gte=start, day__lt=end)
        .values("day").annotate(calls=Sum("calls")).values_list("day", "calls")
    )
    return {day: int(calls) for day, calls in rows}


def usage_by_customer_day(*, customer_ids: list[int], start: date, end: date) -> dict[int, dict[date, int]]:
    """One query: every customer's calls per day over [start, end) (the month-close batch)."""
    rows = (
        UsageRecord.objects.filter(customer_id__in=customer_ids, day__gte=start, day__lt=end)
        .values("customer_id", "day").annotate(calls=Sum("calls")).values_list("customer_id", "day", "calls")
    )
    usage: dict[int, dict[date, int]] = defaultdict(dict)
    for customer_id, day, calls in rows:
        usage[customer_id][day] = int(calls)
    return usage


def credit_balance(*, customer_id: int, excluding_invoice_id: int | None = None) -> Decimal:
    """Credit the customer has left: granted less what issued invoices used (README "Billing")."""
    entries = CreditEntry.objects.filter(customer_id=customer_id)
    if excluding_invoice_id is not None:
        entries = entries.exclude(invoice_id=excluding_invoice_id)
    return entries.aggregate(total=Sum("amount"))["total"] or ZERO


def credit_balances(*, customer_ids: list[int]) -> dict[int, Decimal]:
    rows = (CreditEntry.objects.filter(customer_id__in=customer_ids).values("customer_id")
            .annotate(total=Sum("amount")).values_list("customer_id", "total"))
    return {customer_id: total for customer_id, total in rows if total}


def spend_caps(*, customer_ids: list[int], at: datetime) -> dict[int, Decimal]:
    """Hard-stop spend caps in dollars in force at `at` (a period's end): a cap set later never
    reaches back into a closed period. One query."""
    rows = (SpendCapChange.objects.filter(customer_id__in=customer_ids, at__lt=at)
            .order_by("customer_id", "-at", "-pk").distinct("customer_id").values_list("customer_id", "spend_cap"))
    return {customer_id: cap for customer_id, cap in rows if cap is not None}


def invoice_compute(
    *, customer: Customer, period: str, as_of: datetime | None = None,
    extra_calls: dict[date, int] | None = None, with_credit: bool = True,
) -> Rating:
    """The period's invoice as it stands: history up to `as_of` (default: now) and flushed usage.

    Days after `as_of` count on the terms held then (mid-period this is the month so far plus the
    base fees still to come). `extra_calls` adds calls per day (unflushed counts, a projection).
    """
    start, end = period_bounds(period)
    history = history_of(customer=customer, before=day_start(end), upto=as_of or timezone.now())
    calls = daily_calls(customer_id=customer.pk, start=start, end=end)
    for day, count in (extra_calls or {}).items():
        calls[day] = calls.get(day, 0) + count
    return rate(
        customer_id=customer.pk, period=period, history=history, terms=terms_by_id(_history_terms(history)),
        daily_calls=calls, spend_cap=spend_caps(customer_ids=[customer.pk], at=min(day_start(end), as_of or timezone.now())).get(customer.pk),
        credit_balance=_draft_credit(customer.pk, period) if with_credit else ZERO,
    )


def _draft_credit(customer_id: int, period: str) -> Decimal:
    """Credit a draft may use: the balance, less what the customer's other drafts already take."""
    other_drafts = (Invoice.objects.filter(customer_id=customer_id, status=Invoice.Status.DRAFT)
                    .exclude(period=period).values_list("pk", flat=True))
    taken = sum((-line for line in _draft_credit_lines(list(other_drafts))), ZERO)
    return max(ZERO, credit_balance(customer_id=customer_id) - taken)


def _draft_credit_lines(invoice_ids: list[int]) -> list[Decimal]:
    if not invoice_ids:
        return []
    return list(InvoiceLine.objects.filter(invoice_id__in=invoice_ids, kind=InvoiceLine.Kind.CREDIT,
                                           description=BALANCE_CREDIT).values_list("amount", flat=True))


def projected_calls(*, rating_days: list, daily: dict[date, int], history: History, now: datetime) -> dict[date, int] | None:
    """Calls still to come this period at the rate of the billable time so far, per future day.

    None until at least one whole day of billable (non-trial) time has passed: a projection from
    minutes of data (or from free trial calls) would promise nothing true.
    """
    seconds, calls = 0.0, 0
    future: list[tuple[date, float]] = []
    for day in rating_days:
        if day.trial:
            continue
        begins = max(day_start(day.day), history.created_at)
        ends = day_start(day.day + timedelta(days=1))
        if now >= ends:
            seconds += (ends - begins).total_seconds()
            calls += daily.get(day.day, 0)
        elif now > begins:
            seconds += (now - begins).total_seconds()
            calls += daily.get(day.day, 0)
            future.append((day.day, (ends - now).total_seconds()))
        else:
            future.append((day.day, (ends - begins).total_seconds()))
    if seconds < 86_400:
        return None
    per_second = calls / seconds
    return {day: int(per_second * left) for day, left in future}


@dataclass(frozen=True)
class PlanChangePreview:
    plan: Plan
    period: str
    base_before: Decimal  # this period's base fees if nothing changes
    base_after: Decimal  # ... if the change happens at `at`
    difference: Decimal
    days_left: int  # days of the period from `at` on, the day of `at` included
    trial_kept: bool  # a trial continues on a paid plan; a plan without a price ends it
    owed_after: Decimal  # the period's total so far with the change: base fees and overage owed
    trial_starts: bool = False  # the change starts the plan's trial (from Free, no card)


def plan_change_preview(
    *, customer: Customer, plan: Plan, terms: Terms | None = None, at: datetime | None = None,
    starts_trial: bool = False,
) -> PlanChangePreview:
    """What changing to `plan` at `at` (default now) does to this period: the same rating as the
    invoice, on the history with the change added. Days from tomorrow on move to the new terms
    (the plan's current terms unless `terms` is given; nothing is written)."""
    at = at or timezone.now()
    terms = terms or Terms(pk=0, plan=plan, **{name: getattr(plan, name) for name in Terms.VALUE_FIELDS})
    period = period_of(at)
    start, end = period_bounds(period)
    history = history_of(customer=customer, before=day_start(end), upto=at)
    trial_kept = plan.is_paid
    trial_after = customer.trial_ends_at if trial_kept or not customer.trial_ends_at else min(customer.trial_ends_at, at)
    trial_from = history.trial_starts_at
    if starts_trial:  # a move from Free without a card starts the plan's trial (subscriptions.plan_change)
        trial_from, trial_after = at, at + timedelta(days=plan.trial_days)
    changed = History(created_at=history.created_at, signup_terms_id=history.signup_terms_id, trial_ends_at=trial_after,
                      trial_starts_at=trial_from, changes=(*history.changes, (at, terms.pk, "customer")))
    known = {**terms_by_id(_history_terms(history)), terms.pk: terms}
    calls = daily_calls(customer_id=customer.pk, start=start, end=end)
    before, after = (rate(customer_id=customer.pk, period=period, history=h, terms=known, daily_calls=calls)
                     for h in (history, changed))
    return PlanChangePreview(
        plan=plan, period=period, base_before=before.base, base_after=after.base,
        difference=after.base - before.base, days_left=(end - at.date()).days,
        trial_kept=trial_kept and customer.status == Customer.Status.TRIAL, owed_after=after.charges,
        trial_starts=starts_trial,
    )


def invoices_for_customer(*, customer: Customer) -> list[Invoice]:
    return list(Invoice.objects.filter(customer=customer).exclude(status=Invoice.Status.DRAFT).order_by("-period"))


@dataclass(frozen=True)
class LiveUsage:
    """This period as it stands to the second: the invoice so far (Postgres plus what Redis has
    not flushed yet), rated by the invoice's own code, with the base fees still to come."""

    rating: Rating
    month_calls: int  # every call counted this period, trial days included (the meter's month count)
    by_product: dict[str, int]
    by_day: dict[date, int]
    unflushed: int
    today: date
    history: History
    terms_now: Terms  # the terms held now (a trial's plan too)

    @property
    def current(self) -> Run | None:
        """The run today belongs to (it reaches the period's end on today's terms); None on a trial day."""
        return next((run for run in self.rating.runs if run.first <= self.today <= run.last), None)

    @property
    def remaining(self) -> int:
        """Included calls left on today's terms (during a trial: those of the run after it)."""
        upcoming = self.current or next((run for run in self.rating.runs if run.first > self.today), None)
        return upcoming.allowance_left if upcoming else 0

    @property
    def included(self) -> int:
        """Calls the period includes: the runs' allowances together."""
        return sum(run.allowance for run in self.rating.runs)

    @property
    def overage_calls(self) -> int:
        return sum(run.overage_calls for run in self.rating.runs)


# /v1/usage answers without SQL in steady state: a customer's history changes only with a write
# that raises its config_version, which every call's key config carries.
_histories: TTLCache = TTLCache(maxsize=20_000, ttl=60)


def _history_and_terms(customer: Customer | int, *, version: int | None, end: datetime, now: datetime) -> tuple[History, dict]:
    customer_id = getattr(customer, "pk", customer)
    key = (customer_id, version, end)
    hit = _histories.get(key) if version is not None else None
    if hit is not None:
        return hit
    history = history_of(customer=customer_id, before=end, upto=now)
    found = (history, terms_by_id(_history_terms(history)))
    if version is not None:
        _histories[key] = found
    return found


def usage_live(
    *, customer: Customer | int, now: datetime | None = None, cached: bool = False, version: int | None = None,
) -> LiveUsage:
    """`customer` may be an id with `version` (its config_version): then the history is cached."""
    now = now or timezone.now()
    period = period_of(now)
    _, end = period_bounds(period)
    customer_id = getattr(customer, "pk", customer)
    summary = usage_summary(customer_id=customer_id, day=now.date(), cached=cached)
    by_day = {date.fromisoformat(day): calls for day, calls in summary.by_day.items()}
    history, terms = _history_and_terms(customer, version=version, end=day_start(end), now=now)
    rating = rate(customer_id=customer_id, period=period, history=history, terms=terms, daily_calls=by_day)
    return LiveUsage(rating=rating, month_calls=summary.calls, by_product=dict(summary.by_product), by_day=by_day,
                     unflushed=summary.unflushed, today=now.date(), history=history,
                     terms_now=terms[history.terms_at(now)])
