"""Growth figures, from the book alone (no query): MRR now and by plan, the MRR movements of
each month with its logo churn and net revenue retention, and trial conversion by signup week
(README "Usage portal and revenue dashboard")."""
from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal

from accounts.models import Customer
from core.money import CENT, ZERO
from metering.selectors import month_bounds
from plans.models import Plan

from .book import Book
from .figures import month_start, percent
from .mrr import KINDS, customer_mrr


def _instant(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=dt_timezone.utc)


# ---------------------------------------------------------------- MRR now

@dataclass(frozen=True)
class PlanStatusRow:
    plan: Plan
    counts: dict[str, int]
    mrr: Decimal

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class MrrNow:
    mrr: Decimal
    paying: int
    trial_pipeline: Decimal
    trials: int
    by_plan: tuple[PlanStatusRow, ...]
    status_totals: dict[str, int]

    @property
    def arr(self) -> Decimal:
        return self.mrr * 12

    @property
    def arpa(self) -> Decimal:
        return (self.mrr / self.paying).quantize(CENT, rounding=ROUND_HALF_UP) if self.paying else ZERO


def mrr_now(*, book: Book) -> MrrNow:
    counts: dict[int, dict[str, int]] = defaultdict(lambda: {s: 0 for s in Customer.Status.values})
    plan_mrr: dict[int, Decimal] = defaultdict(lambda: ZERO)
    mrr, paying, pipeline, trials = ZERO, 0, ZERO, 0
    for row in book.customers.values():
        terms = book.terms[row.terms_id]
        counts[row.plan_id][row.status] += 1
        amount = customer_mrr(row, terms)
        plan_mrr[row.plan_id] += amount
        mrr += amount
        paying += amount > 0
        if row.status == Customer.Status.TRIAL:
            pipeline, trials = pipeline + terms.price, trials + 1
    by_plan = tuple(PlanStatusRow(plan, dict(counts[pk]), plan_mrr[pk]) for pk, plan in book.plans.items() if pk in counts)
    totals = {s: sum(r.counts[s] for r in by_plan) for s in Customer.Status.values}
    return MrrNow(mrr=mrr, paying=paying, trial_pipeline=pipeline, trials=trials, by_plan=by_plan, status_totals=totals)


# ---------------------------------------------------------------- MRR movements, churn, NRR

@dataclass(frozen=True)
class MonthMovements:
    month: date
    start_mrr: Decimal
    end_mrr: Decimal
    amounts: dict[str, Decimal]
    counts: dict[str, int]
    paying_at_start: int
    churned_logos: int
    retained_mrr: Decimal  # end MRR of the customers who paid at the start

    @property
    def net(self) -> Decimal:
        return sum(self.amounts.values(), ZERO)

    @property
    def logo_churn(self) -> Decimal | None:
        return percent(self.churned_logos, self.paying_at_start)

    @property
    def nrr(self) -> Decimal | None:
        return percent(self.retained_mrr, self.start_mrr)

    @property
    def label(self) -> str:
        return f"{self.month:%b %Y}"


def mrr_movements(*, book: Book, months: int = 12) -> list[MonthMovements]:
    """Each of the last `months` calendar months (UTC, this one so far): MRR at its start and end,
    the movements inside it, logo churn and net revenue retention of its starting customers."""
    today = book.now.date()
    starts = [month_start(today, back) for back in range(months - 1, -1, -1)]
    bounds = [_instant(d) for d in starts] + [min(_instant(month_bounds(today)[1]), book.now)]
    edges = [b - timedelta(microseconds=1) for b in bounds]
    mrr = [ZERO] * len(bounds)
    paying, retained = [0] * months, [ZERO] * months
    amounts = [{k: ZERO for k in KINDS} for _ in starts]
    counts = [{k: 0 for k in KINDS} for _ in starts]
    churned: list[set[int]] = [set() for _ in starts]
    for tl in book.timelines.values():
        if len(tl.at) == 1:  # one price since signup: no search needed
            since, price = tl.at[0], tl.mrr[0]
            values = [price if edge >= since else ZERO for edge in edges]
        else:
            values = [tl.mrr_at(edge) for edge in edges]
        for i, value in enumerate(values):
            mrr[i] += value
        for i in range(months):
            if values[i] > 0:
                paying[i] += 1
                retained[i] += values[i + 1]
        for m in tl.movements:
            i = bisect_right(bounds, m.at) - 1
            if 0 <= i < months:
                amounts[i][m.kind] += m.amount
                counts[i][m.kind] += 1
                if m.kind == "churned" and values[i] > 0:
                    churned[i].add(tl.customer_id)
    return [MonthMovements(start, mrr[i], mrr[i + 1], amounts[i], counts[i], paying[i], len(churned[i]), retained[i])
            for i, start in enumerate(starts)]


def nrr_trailing_year(*, book: Book) -> Decimal | None:
    """MRR today of the customers who paid a year ago, over their MRR then."""
    then = book.now - timedelta(days=365)
    start = now = ZERO
    for tl in book.timelines.values():
        before = tl.mrr_at(then)
        if before > 0:
            start += before
            now += tl.mrr_at(book.now)
    return percent(now, start)


# ---------------------------------------------------------------- signups and trial conversion

@dataclass(frozen=True)
class WeekCohort:
    week: date
    signups: int
    trials: int
    trials_ended: int
    converted: int

    @property
    def conversion(self) -> Decimal | None:
        return percent(self.converted, self.trials_ended)

    @property
    def label(self) -> str:
        return f"{self.week:%d %b}"


def signup_cohorts(*, book: Book, weeks: int = 12) -> list[WeekCohort]:
    """Per signup week (Monday, UTC): signups, trials started, ended, and ended paying."""
    today = book.now.date()
    first = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    rows = {first + timedelta(weeks=w): [0, 0, 0, 0] for w in range(weeks)}
    for row in book.customers.values():
        created = row.created_at.astimezone(dt_timezone.utc).date()
        week = created - timedelta(days=created.weekday())
        if week not in rows:
            continue
        cell = rows[week]
        cell[0] += 1
        if row.trial_ends_at is None or row.trial_ends_at <= row.created_at:
            continue
        cell[1] += 1
        tl = book.timelines[row.id]
        trial_over = row.status != Customer.Status.TRIAL and row.trial_ends_at <= book.now
        if trial_over:
            cell[2] += 1
            cell[3] += any(m.kind == "new" for m in tl.movements)
    return [WeekCohort(week, *cell) for week, cell in rows.items()]

