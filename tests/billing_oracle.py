"""A second, independent reading of README "Billing": what an invoice should charge.

Tests use it to check the real rating code, so it shares nothing with it: it is written from
the rule's words alone, reads the raw tables (Customer, PlanChange, Terms, UsageRecord) and is
deliberately plain and slow: one day at a time, Decimal, no caching, no cleverness. It imports
neither billing.rating, billing.calculations, billing.selectors nor core.money / core.periods:
a shared helper would let one mistake pass both sides (the audit of issue 13 found 27 wrong
invoices that the nightly reconciliation missed because it recomputed with the invoice's own
function).

The rule, as read here:
- The period is a calendar month, UTC. A day of it is billed when the customer existed at some
  moment of the day and was not cancelled at the day's start; on the signup day, "the day's
  start" is the signup moment.
- A day belongs to the terms held at its start (signup terms, then each change's terms; a
  cancellation keeps the terms, a reactivation ends the cancellation). A change made exactly at
  that moment is already held. Only changes made before the period's end count for it.
- Trial days (whose start falls in [trial_started_at, or signup when empty; trial_ends_at))
  belong to no run: free, and their calls count toward no allowance. A trial begins at signup,
  or when a Free customer without a card moves to a paid plan.
- A run is a maximal stretch of consecutive billed non-trial days on one set of terms (one
  Terms row). Per run: base = price x days / days in month; allowance = included x days /
  days in month, half-up to a whole call; overage = max(0, calls - allowance) x overage price,
  none on hard-capped terms. Each line half-up to cents; total = lines - credits, never < 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext

from accounts.models import Customer
from billing.models import Invoice, PlanChange
from metering.models import UsageRecord

ZERO = Decimal("0")
CENTS = Decimal("0.01")
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Line:
    kind: str  # "base" or "overage"
    starts_on: date
    ends_on: date  # exclusive
    quantity: Decimal  # run days (base) or calls beyond the allowance (overage)
    amount: Decimal


@dataclass(frozen=True)
class Expected:
    lines: tuple[Line, ...]  # every line the rule writes, $0.00 ones included
    charges: Decimal  # the sum of the lines
    billed_days: int  # billed days of the period, trial days included
    trial_days: int

    @property
    def charged(self) -> list[Line]:
        """The lines that cost something: what an invoice must show, in date order."""
        return nonzero(self.lines)

    def total(self, credits: Decimal = ZERO) -> Decimal:
        return max(ZERO, self.charges - credits)


def nonzero(lines) -> list[Line]:
    charged = [line for line in lines if line.amount != 0]
    return sorted(charged, key=lambda line: (line.starts_on, line.kind, line.ends_on))


# ------------------------------------------------------------------ pure arithmetic

def cents_half_up(value: Decimal) -> Decimal:
    return value.quantize(CENTS, rounding=ROUND_HALF_UP)


def calls_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def share(amount: Decimal, days: int, days_in_month: int) -> Decimal:
    """amount x days / days in month, to 50 digits: far finer than any half-cent or half-call."""
    with localcontext() as context:
        context.prec = 50
        return Decimal(amount) * days / days_in_month


def run_lines(*, price: Decimal, included: int, overage_price: Decimal, hard_cap: bool, starts_on: date,
              days: int, days_in_month: int, calls: int) -> list[Line]:
    """The lines of one run: a base line, and an overage line when calls exceed the allowance."""
    ends_on = starts_on + timedelta(days=days)
    base = Line("base", starts_on, ends_on, Decimal(days), cents_half_up(share(price, days, days_in_month)))
    if hard_cap:
        return [base]
    allowance = calls_half_up(share(Decimal(included), days, days_in_month))
    beyond = max(0, calls - allowance)
    if beyond == 0:
        return [base]
    amount = cents_half_up(Decimal(beyond) * Decimal(overage_price))
    return [base, Line("overage", starts_on, ends_on, Decimal(beyond), amount)]


@dataclass(frozen=True)
class Day:
    """One billed, non-trial day: its date, the terms it is rated on (any object) and its calls."""

    on: date
    terms: object
    calls: int


def runs_of(days: list[Day]) -> list[list[Day]]:
    """Consecutive days (no gap) on the same terms, in date order."""
    runs: list[list[Day]] = []
    for day in sorted(days, key=lambda d: d.on):
        last = runs[-1][-1] if runs else None
        if last is not None and last.terms == day.terms and last.on + ONE_DAY == day.on:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


# ------------------------------------------------------------------ reading the tables

def month_days(period: str) -> list[date]:
    year, month = (int(part) for part in period.split("-"))
    day, days = date(year, month, 1), []
    while day.month == month:
        days.append(day)
        day += ONE_DAY
    return days


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=dt_timezone.utc)


def _held_at(moment: datetime, signup_terms, changes: list[PlanChange]) -> tuple[object, bool]:
    """(terms, cancelled) at `moment`, replaying every change made at or before it, in order."""
    terms, cancelled = signup_terms, False
    for change in changes:
        if change.at > moment:
            continue
        if change.reason == PlanChange.Reason.CANCELLED:
            cancelled = True
        elif change.reason == PlanChange.Reason.REACTIVATED:
            cancelled, terms = False, change.terms
        else:
            terms = change.terms
    return terms, cancelled


def _in_trial(customer: Customer, moment: datetime) -> bool:
    if customer.trial_ends_at is None:
        return False
    began = customer.trial_started_at or customer.created_at
    return began <= moment < customer.trial_ends_at


def expected_invoice(customer: Customer, period: str) -> Expected:
    days = month_days(period)
    period_end = midnight(days[-1]) + ONE_DAY
    customer = Customer.objects.select_related("signup_terms").get(pk=customer.pk)
    if customer.signup_terms is None:
        raise AssertionError(f"{customer} has no signup terms: the oracle cannot know its first run")
    changes = list(
        PlanChange.objects.filter(customer=customer, at__lt=period_end).select_related("terms").order_by("at", "pk")
    )
    calls: dict[date, int] = {}
    for record in UsageRecord.objects.filter(customer=customer, day__gte=days[0], day__lt=period_end.date()):
        calls[record.day] = calls.get(record.day, 0) + record.calls

    billed, trial_days, billed_days = [], 0, 0
    for day in days:
        if customer.created_at >= midnight(day) + ONE_DAY:
            continue  # not signed up yet at any moment of the day
        start = max(midnight(day), customer.created_at)
        terms, cancelled = _held_at(start, customer.signup_terms, changes)
        if cancelled:
            continue
        billed_days += 1
        if _in_trial(customer, start):
            trial_days += 1
            continue
        billed.append(Day(day, terms.pk, calls.get(day, 0)))

    terms_by_pk = {customer.signup_terms.pk: customer.signup_terms, **{c.terms_id: c.terms for c in changes}}
    lines: list[Line] = []
    for run in runs_of(billed):
        terms = terms_by_pk[run[0].terms]
        lines += run_lines(
            price=terms.price, included=terms.included_calls, overage_price=terms.overage_price,
            hard_cap=terms.hard_cap, starts_on=run[0].on, days=len(run), days_in_month=len(days),
            calls=sum(day.calls for day in run),
        )
    return Expected(tuple(lines), sum((line.amount for line in lines), ZERO), billed_days, trial_days)


# ------------------------------------------------------------------ reading a stored invoice

def stored_charges(invoice: Invoice) -> list[Line]:
    """The invoice's base and overage lines that cost something, as oracle lines."""
    return nonzero(
        Line(row.kind, row.starts_on, row.ends_on, Decimal(row.quantity), row.amount)
        for row in invoice.lines.exclude(kind="credit")
    )


def stored_credits(invoice: Invoice) -> Decimal:
    """Credits as a positive amount (credit lines carry negative amounts)."""
    return -sum((row.amount for row in invoice.lines.filter(kind="credit")), ZERO)


def mismatch(invoice: Invoice) -> str | None:
    """None when the stored invoice charges what the rule gives; else a readable difference."""
    expected = expected_invoice(invoice.customer, invoice.period)
    stored = stored_charges(invoice)
    want_total = expected.total(stored_credits(invoice))
    if stored == expected.charged and invoice.total == want_total:
        return None
    return (f"{invoice.customer} {invoice.period} (invoice #{invoice.pk}): total {invoice.total} vs {want_total}\n"
            f"  stored:   {stored}\n  expected: {expected.charged}")
