"""Rating: a period's history and usage in, its invoice lines out. Pure: no database, no clock.

The rule (README "Billing"): a period is a calendar month, UTC. A day is billed when
the customer existed during it and was not cancelled at its start, and it belongs to the terms
held at its start (on the signup day, at signup). Trial days belong to no run: no base fee, and
their calls are free and count toward no allowance. The other days split into runs, maximal
stretches of consecutive days on one set of terms. Each run bills

    base      = price × run days ÷ days in the month
    allowance = included calls × run days ÷ days in the month, half-up to a whole call
    overage   = max(0, calls on the run's days − allowance) × the run's overage price
                (never on hard-capped terms)

every line rounded half-up to cents. Credit from the customer's balance, and a hard-stop spend
cap, reduce the total, never below zero.

The inputs are what a period's history was: only changes made before the period's end are
passed in (selectors.history_*), so nothing done later can change a period's invoice.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Protocol

from core.money import ZERO, money
from core.periods import day_start, period_bounds
from plans.pricing import overage_amount, overage_calls, run_allowance, run_base

CANCELLED, REACTIVATED = "cancelled", "reactivated"
# The credit line that draws on the customer's balance; issuing the invoice debits the balance by it.
BALANCE_CREDIT = "Credit from your balance"


class TermsLike(Protocol):
    pk: int
    plan_id: int
    name: str
    price: Decimal
    included_calls: int
    overage_price: Decimal
    hard_cap: bool


@dataclass(frozen=True)
class History:
    """A customer's terms over time: those taken at signup, then every change (at, terms id, reason).

    A cancellation is a change with reason "cancelled" (terms unchanged), a reactivation one with
    "reactivated". `changes` are sorted by time.
    """

    created_at: datetime
    signup_terms_id: int
    trial_ends_at: datetime | None = None
    changes: tuple[tuple[datetime, int, str], ...] = ()
    trial_starts_at: datetime | None = None  # None: at signup
    _times: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_times", tuple(at for at, _, _ in self.changes))

    def terms_at(self, moment: datetime) -> int:
        index = bisect_right(self._times, moment)
        return self.changes[index - 1][1] if index else self.signup_terms_id

    def cancelled_at(self, moment: datetime) -> bool:
        for _, _, reason in reversed(self.changes[: bisect_right(self._times, moment)]):
            if reason in (CANCELLED, REACTIVATED):
                return reason == CANCELLED
        return False

    def in_trial_at(self, moment: datetime) -> bool:
        return self.trial_ends_at is not None and (self.trial_starts_at or self.created_at) <= moment < self.trial_ends_at


@dataclass(frozen=True)
class Day:
    day: date
    terms_id: int
    trial: bool


@dataclass(frozen=True)
class Run:
    terms: TermsLike
    first: date
    last: date  # inclusive
    days: int
    days_in_month: int
    calls: int
    allowance: int
    overage_calls: int
    base: Decimal
    overage: Decimal

    @property
    def allowance_left(self) -> int:
        return max(0, self.allowance - self.calls)


@dataclass(frozen=True)
class Line:
    kind: str  # base | overage | credit
    description: str
    quantity: Decimal
    unit_price: Decimal  # base: the terms' monthly price; overage: per call; credit: negative
    amount: Decimal
    plan_id: int | None
    starts_on: date | None
    ends_on: date | None  # exclusive


@dataclass(frozen=True)
class Rating:
    customer_id: int
    period: str
    runs: tuple[Run, ...]
    trial_days: tuple[Day, ...]
    lines: tuple[Line, ...]
    charges: Decimal  # base and overage lines
    subtotal: Decimal  # charges less the spend-cap adjustment, before credit
    credit_applied: Decimal
    total: Decimal  # = sum of lines, never negative
    calls: int  # billable calls: those on the runs' days
    trial_calls: int
    end_plan_id: int | None  # the plan of the last billed day

    @property
    def has_days(self) -> bool:
        return bool(self.runs or self.trial_days)

    @property
    def billed_days(self) -> int:
        return sum(run.days for run in self.runs) + len(self.trial_days)

    @property
    def overage(self) -> Decimal:
        return sum((run.overage for run in self.runs), ZERO)

    @property
    def base(self) -> Decimal:
        return sum((run.base for run in self.runs), ZERO)


@lru_cache(maxsize=32)
def _period_days(period: str) -> tuple[tuple[date, datetime, datetime], ...]:
    start, end = period_bounds(period)
    days = [start + timedelta(days=n) for n in range((end - start).days)]
    return tuple((day, day_start(day), day_start(day + timedelta(days=1))) for day in days)


def period_days(*, period: str, history: History) -> list[Day]:
    """The billed days of the period, each with the terms held at its start and whether it is a trial day."""
    days = []
    for day, begins, ends in _period_days(period):
        moment = max(begins, history.created_at)
        if moment < ends and not history.cancelled_at(moment):
            days.append(Day(day=day, terms_id=history.terms_at(moment), trial=history.in_trial_at(moment)))
    return days


def _split(days: Sequence[Day]) -> list[list[Day]]:
    groups: list[list[Day]] = []
    for item in days:
        last = groups[-1][-1] if groups else None
        if (last and last.terms_id == item.terms_id and last.trial == item.trial
                and last.day + timedelta(days=1) == item.day):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _span(first: date, last: date) -> str:
    if first == last:
        return f"{first.day} {first:%b}"
    if first.month == last.month:
        return f"{first.day}–{last.day} {last:%b}"
    return f"{first.day} {first:%b}–{last.day} {last:%b}"


def _run(terms: TermsLike, days: list[Day], days_in_month: int, daily_calls: Mapping[date, int]) -> Run:
    count = len(days)
    calls = sum(daily_calls.get(d.day, 0) for d in days)
    allowance = run_allowance(included_calls=terms.included_calls, days=count, days_in_month=days_in_month)
    extra = overage_calls(calls=calls, allowance=allowance, hard_cap=terms.hard_cap)
    return Run(
        terms=terms, first=days[0].day, last=days[-1].day, days=count, days_in_month=days_in_month, calls=calls,
        allowance=allowance, overage_calls=extra,
        base=run_base(price=terms.price, days=count, days_in_month=days_in_month),
        overage=overage_amount(calls=extra, unit_price=terms.overage_price),
    )


def _run_lines(run: Run) -> list[Line]:
    span, ends_on = _span(run.first, run.last), run.last + timedelta(days=1)
    lines = [Line(
        kind="base", description=f"{run.terms.name}, {span} ({run.days} of {run.days_in_month} days)",
        quantity=Decimal(run.days), unit_price=run.terms.price, amount=run.base, plan_id=run.terms.plan_id,
        starts_on=run.first, ends_on=ends_on,
    )]
    if run.overage > 0:
        lines.append(Line(
            kind="overage",
            description=f"{run.terms.name}, {span}: {run.overage_calls:,} calls beyond {run.allowance:,} included",
            quantity=Decimal(run.overage_calls), unit_price=run.terms.overage_price, amount=run.overage,
            plan_id=run.terms.plan_id, starts_on=run.first, ends_on=ends_on,
        ))
    return lines


def _trial_line(terms: TermsLike, days: list[Day], days_in_month: int) -> Line:
    return Line(
        kind="base", description=f"{terms.name} trial, {_span(days[0].day, days[-1].day)} (free)",
        quantity=Decimal(len(days)), unit_price=ZERO, amount=ZERO, plan_id=terms.plan_id,
        starts_on=days[0].day, ends_on=days[-1].day + timedelta(days=1),
    )


def rate(
    *, customer_id: int, period: str, history: History, terms: Mapping[int, TermsLike],
    daily_calls: Mapping[date, int], credit_balance: Decimal = ZERO, spend_cap: Decimal | None = None,
) -> Rating:
    """The period's invoice. `credit_balance` is what the customer's balance can give (used up to
    the charges); `spend_cap` a hard-stop cap in dollars that bounds the total."""
    start, end = period_bounds(period)
    days_in_month = (end - start).days
    days = period_days(period=period, history=history)
    runs, trial_days, lines = [], [], []
    for group in _split(days):
        held = terms[group[0].terms_id]
        if group[0].trial:
            trial_days += group
            lines.append(_trial_line(held, group, days_in_month))
        else:
            run = _run(held, group, days_in_month, daily_calls)
            runs.append(run)
            lines += _run_lines(run)
    charges = sum((line.amount for line in lines), ZERO)
    subtotal = charges
    if spend_cap is not None and charges > spend_cap >= 0:
        # The meter stops calls at the cap; this bounds what slipped past it (README "Billing").
        lines.append(_credit_line(f"Spend cap: usage beyond your ${spend_cap:,.2f} hard stop is not billed",
                                  subtotal - money(spend_cap)))
        subtotal = money(spend_cap)
    applied = min(max(ZERO, money(credit_balance)), subtotal)
    if applied > 0:
        lines.append(_credit_line(BALANCE_CREDIT, applied))
    return Rating(
        customer_id=customer_id, period=period, runs=tuple(runs), trial_days=tuple(trial_days), lines=tuple(lines),
        charges=charges, subtotal=subtotal, credit_applied=applied, total=subtotal - applied,
        calls=sum(run.calls for run in runs), trial_calls=sum(daily_calls.get(d.day, 0) for d in trial_days),
        end_plan_id=terms[days[-1].terms_id].plan_id if days else None,
    )


def _credit_line(description: str, amount: Decimal) -> Line:
    return Line(kind="credit", description=description[:200], quantity=Decimal(1), unit_price=-amount,
                amount=-amount, plan_id=None, starts_on=None, ends_on=None)
