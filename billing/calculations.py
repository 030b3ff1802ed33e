"""The invoice arithmetic, free of the database: history and usage in, an InvoiceDraft out.

Both the single-customer selector and the month-close batch build their inputs (from one
customer's rows or from bulk queries) and call `invoice_draft_build`, so an invoice, the portal's
projection and a plan-change preview always agree to the cent.

Rules (DESIGN §6): a calendar month in UTC; a day is billed when the customer existed during it
and was not cancelled at its start, and belongs to the plan held at its start (or at signup, on
the signup day); trial days cost nothing (no base fee, their calls are not billable); the base
fee of each run of days on one plan is price × days / days_in_month; overage is
(billable calls − included) × overage_price of the plan held at the end of the period, never on a
hard-capped plan; credits reduce the total, never below zero. Every line rounds half-up to cents.
"""
from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError

from plans.models import Plan
from plans.pricing import overage_amount, overage_calls

CENT = Decimal("0.01")
UNIT = Decimal("0.000001")
ZERO = Decimal("0.00")
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def period_bounds(period: str) -> tuple[date, date]:
    """First day of the period and first day of the next one; a clear error for anything else."""
    match = _PERIOD.match(period or "")
    if not match:
        raise ValidationError({"period": f"Expected a month as YYYY-MM, got {period!r}."})
    year, month = int(match.group(1)), int(match.group(2))
    return date(year, month, 1), date(year + (month == 12), month % 12 + 1, 1)


def period_of(moment: datetime) -> str:
    return f"{moment.astimezone(dt_timezone.utc):%Y-%m}"


def period_previous(period: str) -> str:
    start, _ = period_bounds(period)
    return f"{start - timedelta(days=1):%Y-%m}"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=dt_timezone.utc)


@dataclass(frozen=True)
class Timeline:
    """A customer's plan history: the plan held since signup and every change after it.

    `changes` are (at, to_plan_id, reason) sorted by time; a cancellation is a change with
    reason "cancelled" (its plan stays the same), a reactivation one with "reactivated".
    """

    created_at: datetime
    initial_plan_id: int
    changes: tuple[tuple[datetime, int, str], ...] = ()

    @cached_property
    def _times(self) -> list[datetime]:
        return [at for at, _, _ in self.changes]

    @cached_property
    def _ever_cancelled(self) -> bool:
        return any(reason == "cancelled" for _, _, reason in self.changes)

    def _upto(self, moment: datetime, *, inclusive: bool) -> int:
        return bisect_right(self._times, moment) if inclusive else bisect_left(self._times, moment)

    def plan_at(self, moment: datetime, *, inclusive: bool = True) -> int:
        index = self._upto(moment, inclusive=inclusive)
        return self.changes[index - 1][1] if index else self.initial_plan_id

    def cancelled_at(self, moment: datetime) -> bool:
        if not self._ever_cancelled:
            return False
        for _, _, reason in reversed(self.changes[: self._upto(moment, inclusive=True)]):
            if reason in ("cancelled", "reactivated"):
                return reason == "cancelled"
        return False


def timeline_from_changes(
    *, created_at: datetime, current_plan_id: int, changes: Sequence[tuple[datetime, int, int, str]]
) -> Timeline:
    """`changes` as (at, from_plan_id, to_plan_id, reason) rows, oldest first."""
    initial = changes[0][1] if changes else current_plan_id
    return Timeline(
        created_at=created_at, initial_plan_id=initial,
        changes=tuple((at, to_plan, reason) for at, _, to_plan, reason in changes),
    )


@dataclass(frozen=True)
class DraftLine:
    kind: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    plan: Plan | None
    starts_on: date | None
    ends_on: date | None  # exclusive


@dataclass(frozen=True)
class InvoiceDraft:
    customer_id: int
    period: str
    lines: tuple[DraftLine, ...]
    subtotal: Decimal  # before credits
    total: Decimal  # = sum of lines, never negative
    calls: int  # billable calls (trial days excluded)
    plan: Plan | None  # held at the end of the period: its overage price applies
    billed_days: int
    has_days: bool  # the customer existed, uncancelled, on at least one day of the period


@dataclass(frozen=True)
class _Day:
    day: date
    plan_id: int
    trial: bool


@lru_cache(maxsize=16)
def _period_days(period: str) -> tuple[tuple[date, datetime, datetime], ...]:
    """Each day of the period with the moments it starts and ends (the same for every customer)."""
    start, end = period_bounds(period)
    days = [start + timedelta(days=n) for n in range((end - start).days)]
    return tuple((day, day_start(day), day_start(day + timedelta(days=1))) for day in days)


def billed_days(*, period: str, timeline: Timeline, trial_ends_at: datetime | None) -> list[_Day]:
    days = []
    for day, begins, ends in _period_days(period):
        moment = max(begins, timeline.created_at)
        if moment < ends and not timeline.cancelled_at(moment):
            trial = trial_ends_at is not None and moment < trial_ends_at
            days.append(_Day(day=day, plan_id=timeline.plan_at(moment), trial=trial))
    return days


def _runs(days: list[_Day]) -> list[list[_Day]]:
    runs: list[list[_Day]] = []
    for item in days:
        last = runs[-1][-1] if runs else None
        if last and last.plan_id == item.plan_id and last.trial == item.trial and last.day + timedelta(days=1) == item.day:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _base_line(run: list[_Day], plan: Plan, days_in_month: int) -> DraftLine:
    count = len(run)
    first, last = run[0].day, run[-1].day
    span = f"{first:%b} {first.day}–{last:%b} {last.day}" if count > 1 else f"{first:%b} {first.day}"
    if run[0].trial:
        description = f"{plan.name} trial, {span} ({count} of {days_in_month} days, free)"
        unit_price = amount = ZERO
    else:
        description = f"{plan.name}, {span} ({count} of {days_in_month} days)"
        unit_price = (plan.price / days_in_month).quantize(UNIT, rounding=ROUND_HALF_UP)
        amount = money(plan.price * count / days_in_month)
    return DraftLine(
        kind="base", description=description[:200], quantity=Decimal(count), unit_price=unit_price,
        amount=amount, plan=plan, starts_on=first, ends_on=last + timedelta(days=1),
    )


def _overage_line(plan: Plan, calls: int, start: date, end: date) -> DraftLine | None:
    extra = overage_calls(calls=calls, included_calls=plan.included_calls, hard_cap=plan.hard_cap)
    if extra <= 0 or plan.overage_price <= 0:
        return None
    return DraftLine(
        kind="overage",
        description=f"{plan.name} overage: {extra:,} calls beyond {plan.included_calls:,} included",
        quantity=Decimal(extra), unit_price=plan.overage_price,
        amount=overage_amount(calls=extra, unit_price=plan.overage_price),
        plan=plan, starts_on=start, ends_on=end,
    )


def _credit_lines(credits: Sequence[tuple[str, Decimal]], charges: Decimal) -> list[DraftLine]:
    """Credits as asked for (negative unit price), each applied only as far as charges remain."""
    lines, left = [], charges
    for description, asked in credits:
        applied = min(left, abs(asked))
        left -= applied
        lines.append(DraftLine(
            kind="credit", description=description[:200], quantity=Decimal(1), unit_price=-abs(asked),
            amount=ZERO - applied, plan=None, starts_on=None, ends_on=None,
        ))
    return lines


def invoice_draft_build(
    *, customer_id: int, period: str, timeline: Timeline, trial_ends_at: datetime | None,
    plans: Mapping[int, Plan], daily_calls: Mapping[date, int], credits: Sequence[tuple[str, Decimal]] = (),
    calls: int | None = None,
) -> InvoiceDraft:
    start, end = period_bounds(period)
    days_in_month = (end - start).days
    days = billed_days(period=period, timeline=timeline, trial_ends_at=trial_ends_at)
    lines = [_base_line(run, plans[run[0].plan_id], days_in_month) for run in _runs(days)]
    if calls is None:
        calls = sum(daily_calls.get(d.day, 0) for d in days if not d.trial)
    end_plan = plans[timeline.plan_at(day_start(end), inclusive=False)]
    overage = _overage_line(end_plan, calls, start, end) if days else None
    lines += [overage] if overage else []
    subtotal = sum((line.amount for line in lines), ZERO)
    lines += _credit_lines(credits, subtotal)
    total = sum((line.amount for line in lines), ZERO)
    return InvoiceDraft(
        customer_id=customer_id, period=period, lines=tuple(lines), subtotal=subtotal, total=total,
        calls=max(0, calls), plan=end_plan, billed_days=len(days), has_days=bool(days),
    )
