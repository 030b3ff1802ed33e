"""Staff revenue dashboard reads: a fixed number of aggregate queries, whatever the customer count.

Customers, plan changes and terms are read once (three queries of narrow rows) and the MRR
history is rebuilt in memory (dashboard.mrr) from the terms snapshots, never the live plan
prices; usage and invoices are summed by Postgres; each customer's overage comes from billing's
rating. Nothing here queries per customer.
"""
from __future__ import annotations

import gc
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.models import Customer
from billing.models import Invoice, InvoiceLine, PlanChange
from billing.rating import History, Rating, rate
from billing.selectors import projected_calls
from core.periods import day_start, period_bounds, period_of
from metering import connection as metering_connection
from metering.models import UsageRecord
from metering.selectors import month_bounds
from plans.models import Plan, Terms
from plans.pricing import overage_amount, overage_calls, run_allowance
from plans.selectors import product_names

from .mrr import KINDS, ZERO, ChangeRow, CustomerRow, Timeline, timeline_build

CENT = Decimal("0.01")
SETTLED_CACHE_SECONDS = 26 * 3600
PAYING = (Customer.Status.ACTIVE, Customer.Status.PAST_DUE)
ISSUED = (Invoice.Status.OPEN, Invoice.Status.PAID, Invoice.Status.UNCOLLECTIBLE)


def month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def _instant(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=dt_timezone.utc)


def _pct(part: Decimal | int, whole: Decimal | int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------- loading (4 queries)

@dataclass(frozen=True)
class Book:
    """Every customer's narrow row, the plans, every terms snapshot, each customer's changes
    (for its rating) and its MRR timeline."""

    now: datetime
    plans: dict[int, Plan]
    terms: dict[int, Terms]
    customers: dict[int, CustomerRow]
    companies: dict[int, str]
    changes: dict[int, list[ChangeRow]]
    timelines: dict[int, Timeline]


# Timestamps come as whole microseconds since the epoch: exact, and parsed as plain integers,
# many times faster than ten thousand timestamp strings (this is the page's largest read).
_US = "(EXTRACT(EPOCH FROM {0}) * 1000000)::bigint"
_CUSTOMERS_SQL = f"""SELECT id, company, {_US.format("created_at")}, {_US.format("trial_ends_at")}, status, plan_id,
terms_id, COALESCE(signup_terms_id, terms_id), {_US.format("trial_started_at")} FROM {{table}} ORDER BY id"""
_CHANGES_SQL = f"""SELECT customer_id, {_US.format("at")}, terms_id, reason
FROM {{table}} WHERE at <= %s ORDER BY at, id"""
_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def _at(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def book_load(*, now: datetime | None = None) -> Book:
    now = now or timezone.now()
    plans = {plan.pk: plan for plan in Plan.objects.all()}
    terms = {snapshot.pk: snapshot for snapshot in Terms.objects.all()}
    prices = {pk: snapshot.price for pk, snapshot in terms.items()}
    customers, companies = {}, {}
    changes: dict[int, list[ChangeRow]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(_CUSTOMERS_SQL.format(table=Customer._meta.db_table))
        for pk, company, created_us, trial_us, status, plan_id, terms_id, signup_terms_id, trial_from_us in cursor.fetchall():
            customers[pk] = CustomerRow(pk, _at(created_us), _at(trial_us), status, plan_id, terms_id, signup_terms_id,
                                        _at(trial_from_us))
            companies[pk] = company
        cursor.execute(_CHANGES_SQL.format(table=PlanChange._meta.db_table), [now])
        for cid, at_us, terms_id, reason in cursor.fetchall():
            changes[cid].append(ChangeRow(_at(at_us), terms_id, reason))
    timelines = {cid: timeline_build(customer=row, changes=changes.get(cid, []), prices=prices, now=now)
                 for cid, row in customers.items()}
    return Book(now=now, plans=plans, terms=terms, customers=customers, companies=companies, changes=dict(changes),
                timelines=timelines)


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


def customer_mrr(row: CustomerRow | Customer, terms: Terms) -> Decimal:
    """Today's MRR of one customer, from its status: paying (active or past due) its terms' price."""
    return terms.price if row.status in PAYING else ZERO


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
        return _pct(self.churned_logos, self.paying_at_start)

    @property
    def nrr(self) -> Decimal | None:
        return _pct(self.retained_mrr, self.start_mrr)

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
    return _pct(now, start)


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
        return _pct(self.converted, self.trials_ended)

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


# ---------------------------------------------------------------- usage (2 queries)

@dataclass(frozen=True)
class CallStats:
    today: int
    this_month: int
    days: tuple[tuple[date, int], ...]
    by_product: tuple[tuple[str, int], ...]
    per_customer: dict[int, tuple[int, int]]  # customer id -> (this month, last month)


# One scan of last month and this one, summed two ways at once (GROUPING SETS): per day and
# product for the charts, per customer for the tables. Which calls are billable is billing's
# rating's call (see customer_revenue), not this query's.
_CALLS_SQL = """
SELECT u.customer_id, u.day, u.product, GROUPING(u.customer_id) = 1 AS per_day,
       SUM(u.calls) AS calls,
       SUM(u.calls) FILTER (WHERE u.day >= %(start)s) AS this,
       SUM(u.calls) FILTER (WHERE u.day < %(start)s) AS last
FROM {usage} u
WHERE u.day >= %(first)s AND u.day < %(end)s
GROUP BY GROUPING SETS ((u.day, u.product), (u.customer_id))
"""


@dataclass(frozen=True)
class _Sums:
    per_day: dict[tuple[date, str], int]
    per_customer: dict[int, tuple[int, int]]  # this month, last month


def _usage_sums(*, first: date, until: date, start: date) -> _Sums:
    """Usage of the days [first, until), summed by day and product and by customer."""
    per_day: dict[tuple[date, str], int] = {}
    per_customer: dict[int, tuple[int, int]] = {}
    if first >= until:
        return _Sums(per_day, per_customer)
    sql = _CALLS_SQL.format(usage=UsageRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, {"start": start, "first": first, "end": until})
        for customer_id, day, product, is_day, calls, this, last in cursor.fetchall():
            if is_day:
                per_day[(day, product)] = int(calls)
            else:
                per_customer[customer_id] = (int(this or 0), int(last or 0))
    return _Sums(per_day, per_customer)


def _settled_sums(*, first: date, until: date, start: date) -> _Sums:
    """Days before yesterday no longer change (a flush lands within a minute; the nightly
    reconciliation reports any later change), so their sums are kept for the day in the cache:
    the page then reads only yesterday and today from Postgres, plus this one cache read."""
    key = f"dashboard:usage:v2:{first}:{until}:{start}"
    try:
        sums = cache.get(key)
    except metering_connection.UNAVAILABLE:
        return _usage_sums(first=first, until=until, start=start)  # Redis down: slower, still right
    if sums is None:
        sums = _usage_sums(first=first, until=until, start=start)
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
    settled = _settled_sums(first=first, until=yesterday, start=start)
    recent = _usage_sums(first=max(first, yesterday), until=today + timedelta(days=1), start=start)
    per_day: dict[date, int] = defaultdict(int)
    per_product: dict[str, int] = defaultdict(int)
    for sums in (settled, recent):
        for (day, product), calls in sums.per_day.items():
            per_day[day] += calls
            if day >= start:
                per_product[product] += calls
    per_customer = dict(settled.per_customer)
    for cid, row in recent.per_customer.items():
        old = per_customer.get(cid, (0, 0))
        per_customer[cid] = (old[0] + row[0], old[1] + row[1])
    labels = product_names()
    days = tuple((today - timedelta(days=29 - i), per_day.get(today - timedelta(days=29 - i), 0)) for i in range(30))
    return CallStats(
        today=per_day.get(today, 0), this_month=sum(n for d, n in per_day.items() if d >= start), days=days,
        by_product=tuple(sorted(((labels.get(p, p), n) for p, n in per_product.items()), key=lambda r: -r[1])),
        per_customer=per_customer,
    )


# ---------------------------------------------------------------- overage, from billing's rating

class Overage(NamedTuple):  # a tuple: ten thousand are made per page view
    so_far: Decimal  # what this period's invoice bills for the calls made so far
    projected: Decimal  # ... with calls going on at the billable run rate (so far, until a day is known)


RATE_IT, NOTHING_BILLED = "rate it", "nothing billed"


class MonthRating:
    """This period's overage per customer, rated as the invoice rates it (billing.rating).

    Most customers' period is one run: the same terms from their first billed moment (the
    month's start, or their signup) to the month's end, with no trial day and no cancellation.
    Their run's allowance and overage come straight from plans.pricing's rule on the month's
    calls, and the projection is billing.selectors.projected_calls' arithmetic for one run (its
    float steps kept, so the figures are equal). Every other customer is rated by
    billing.rating.rate on its day-by-day usage (one query for all of them), and its projection
    by the same pricing rule on each of those runs. dashboard/tests hold both to rate() run on
    the projected calls, as the portal and the invoice do.
    """

    def __init__(self, *, book: Book) -> None:
        self.book, self.now = book, book.now
        self.period = period_of(book.now)
        start, end = period_bounds(self.period)
        self.month_from, self.month_end = day_start(start), day_start(end)
        self.days_in_month = (end - start).days
        self.bounds = [(day_start(start + timedelta(days=n)), day_start(start + timedelta(days=n + 1)))
                       for n in range(self.days_in_month)]
        self.month_clock = self._clock(self.month_from)
        self.allowances: dict[tuple[int, int], int] = {}  # (terms, run days) -> the run's allowance

    def _clock(self, since: datetime) -> tuple[float, tuple[float, ...], float]:
        """Billable seconds so far and the seconds left of each day to come (and their sum), for
        one run from `since` to the month's end: projected_calls' sums, in its order."""
        seconds, lefts = 0.0, []
        for day_begins, ends in self.bounds:
            if ends <= since:
                continue
            begins = max(day_begins, since)
            if self.now >= ends:
                seconds += (ends - begins).total_seconds()
            elif self.now > begins:
                seconds += (self.now - begins).total_seconds()
                lefts.append((ends - self.now).total_seconds())
            else:
                lefts.append((ends - begins).total_seconds())
        return seconds, tuple(lefts), sum(lefts)

    def one_run(self, customer_id: int) -> tuple[Terms, datetime] | str:
        """(terms, first billed moment) of a customer whose period is one run to the month's end;
        NOTHING_BILLED for one cancelled before the month (and not back); else RATE_IT."""
        row = self.book.customers[customer_id]
        since = max(self.month_from, row.created_at)
        changes = self.book.changes.get(customer_id, ())
        if since >= self.month_end or (changes and changes[-1].at > since):  # changes are in time order
            return RATE_IT
        if changes and _cancelled(changes):
            return NOTHING_BILLED
        if row.trial_ends_at is not None and row.trial_ends_at > since:
            return RATE_IT  # a trial day in the month, perhaps (wherever the trial began)
        return self.book.terms[changes[-1].terms_id if changes else row.signup_terms_id], since

    def one_run_overage(self, terms: Terms, since: datetime, calls: int) -> Overage:
        if not calls:
            return NONE_OWED
        whole = since == self.month_from
        days = self.days_in_month if whole else self.days_in_month - (since.date() - self.month_from.date()).days
        allowance = self.allowances.get((terms.pk, days))
        if allowance is None:
            allowance = self.allowances[terms.pk, days] = run_allowance(
                included_calls=terms.included_calls, days=days, days_in_month=self.days_in_month)
        so_far = _owed(terms, allowance, calls)
        seconds, lefts, left_total = self.month_clock if whole else self._clock(since)
        if seconds < 86_400:
            return Overage(so_far, so_far)
        per_second = calls / seconds
        # Whole calls per day to come add up to at most the run rate over the time left: when even
        # that stays within the allowance, the day-by-day sum is not needed (most customers).
        if not overage_calls(calls=calls + int(per_second * left_total) + 1, allowance=allowance, hard_cap=terms.hard_cap):
            return Overage(so_far, so_far)
        return Overage(so_far, _owed(terms, allowance, calls + sum(int(per_second * left) for left in lefts)))

    def history(self, customer_id: int) -> History:
        row = self.book.customers[customer_id]
        changes = tuple((c.at, c.terms_id, c.reason) for c in self.book.changes.get(customer_id, ()))
        return History(created_at=row.created_at, signup_terms_id=row.signup_terms_id, trial_ends_at=row.trial_ends_at,
                       trial_starts_at=row.trial_starts_at, changes=changes)

    def rated_overage(self, customer_id: int, daily: dict[date, int]) -> Overage:
        """rate() on the usage so far; each of its runs again with the projected calls of its days."""
        history = self.history(customer_id)
        rating = rate(customer_id=customer_id, period=self.period, history=history, terms=self.book.terms,
                      daily_calls=daily)
        if self._stays_within(rating, history):
            return Overage(rating.overage, rating.overage)
        future = projected_calls(rating_days=_rated_days(rating), daily=daily, history=history, now=self.now)
        if future is None:
            return Overage(rating.overage, rating.overage)
        projected = ZERO
        for run in rating.runs:
            calls = run.calls + sum(future.get(run.first + timedelta(days=n), 0) for n in range(run.days))
            extra = overage_calls(calls=calls, allowance=run.allowance, hard_cap=run.terms.hard_cap)
            projected += overage_amount(calls=extra, unit_price=run.terms.overage_price)
        return Overage(rating.overage, projected)

    def _stays_within(self, rating: Rating, history: History) -> bool:
        """No run with days to come can pass its allowance, however projected_calls spreads them:
        its rate is at most the billable calls over the whole billable days gone by (the signup
        day left out, being partial), so the day-by-day projection is not needed (most customers)."""
        today = self.now.date()
        signup_day = history.created_at.date()
        past = 0
        for run in rating.runs:
            last_gone = min(run.last, today - timedelta(days=1))
            if last_gone >= run.first:
                past += (last_gone - run.first).days + 1 - (run.first <= signup_day <= last_gone)
        if past < 1:
            return False
        for run in rating.runs:
            to_come = (run.last - max(run.first, today)).days + 1
            if to_come > 0:
                bound = run.calls + -(-rating.calls * to_come // past) + 1
                if overage_calls(calls=bound, allowance=run.allowance, hard_cap=run.terms.hard_cap):
                    return False
        return True


def _owed(terms: Terms, allowance: int, calls: int) -> Decimal:
    extra = overage_calls(calls=calls, allowance=allowance, hard_cap=terms.hard_cap)
    return overage_amount(calls=extra, unit_price=terms.overage_price) if extra else ZERO


class _BilledDay(NamedTuple):
    day: date
    trial: bool


def _rated_days(rating: Rating) -> list[_BilledDay]:
    """The period's billed days, as rate() found them (its runs' days and its trial days), as
    projected_calls reads them."""
    days = [_BilledDay(run.first + timedelta(days=n), False) for run in rating.runs for n in range(run.days)]
    return sorted([*days, *(_BilledDay(day.day, True) for day in rating.trial_days)])


def _cancelled(changes) -> bool:
    """Cancelled after these changes: the last cancellation or reactivation among them decides."""
    for change in reversed(changes):
        if change.reason in (PlanChange.Reason.CANCELLED, PlanChange.Reason.REACTIVATED):
            return change.reason == PlanChange.Reason.CANCELLED
    return False


NONE_OWED = Overage(ZERO, ZERO)


def overage_by_customer(*, book: Book, calls: CallStats) -> dict[int, Overage]:
    """Every customer's overage this period: so far and projected, as its invoice would bill them."""
    month = MonthRating(book=book)
    out, others = {}, []
    for cid in book.customers:
        run = month.one_run(cid)
        if run == RATE_IT:
            others.append(cid)
        elif run == NOTHING_BILLED:
            out[cid] = NONE_OWED
        else:
            out[cid] = month.one_run_overage(*run, calls.per_customer.get(cid, (0, 0))[0])
    if others:
        usage = _daily_usage(customer_ids=others, period=month.period)
        for cid in others:
            out[cid] = month.rated_overage(cid, usage.get(cid, {}))
    return out


_DAILY_SQL = """SELECT customer_id, day, SUM(calls) FROM {usage}
WHERE customer_id = ANY(%s) AND day >= %s AND day < %s GROUP BY customer_id, day"""


def _daily_usage(*, customer_ids: list[int], period: str) -> dict[int, dict[date, int]]:
    """billing.selectors.usage_by_customer_day's rows, without the ORM's per-row cost (one query)."""
    start, end = period_bounds(period)
    usage: dict[int, dict[date, int]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(_DAILY_SQL.format(usage=UsageRecord._meta.db_table), [customer_ids, start, end])
        for customer_id, day, calls in cursor.fetchall():
            usage[customer_id][day] = int(calls)
    return usage


# ---------------------------------------------------------------- revenue per customer

@dataclass(slots=True)  # not frozen: ten thousand are made per page view, and a frozen init costs three times more
class CustomerRevenue:
    customer_id: int
    company: str
    plan: Plan
    status: str
    mrr: Decimal
    calls: int
    calls_last: int
    overage_so_far: Decimal
    overage_projected: Decimal
    revenue: Decimal  # this month so far: MRR + overage so far
    revenue_last: Decimal  # last period's issued invoice total

    @property
    def calls_growth(self) -> Decimal | None:
        return _pct(self.calls - self.calls_last, self.calls_last)

    @property
    def revenue_growth(self) -> Decimal | None:
        return _pct(self.revenue - self.revenue_last, self.revenue_last)


def invoice_totals(*, period: str) -> dict[int, Decimal]:
    rows = Invoice.objects.filter(period=period, status__in=ISSUED).values_list("customer_id", "total")
    return dict(rows)


def customer_revenue(*, book: Book, calls: CallStats, last_totals: dict[int, Decimal]) -> list[CustomerRevenue]:
    overage = overage_by_customer(book=book, calls=calls)
    out = []
    for cid, row in book.customers.items():
        this, last = calls.per_customer.get(cid, (0, 0))
        mrr = customer_mrr(row, book.terms[row.terms_id])
        owed = overage[cid]
        out.append(CustomerRevenue(
            cid, book.companies[cid], book.plans[row.plan_id], row.status, mrr, this, last, owed.so_far,
            owed.projected, mrr + owed.so_far, last_totals.get(cid, ZERO),
        ))
    return out


def overage_by_month(*, today: date, months: int = 12) -> list[tuple[date, Decimal]]:
    """Overage billed per period: overage lines of issued invoices (void and draft left out)."""
    periods = [f"{month_start(today, back):%Y-%m}" for back in range(months - 1, -1, -1)]
    sums = dict(InvoiceLine.objects.filter(
        kind=InvoiceLine.Kind.OVERAGE, invoice__status__in=ISSUED, invoice__period__in=periods,
    ).values_list("invoice__period").annotate(s=Sum("amount")).order_by())
    return [(date(int(p[:4]), int(p[5:]), 1), sums.get(p) or ZERO) for p in periods]


# ---------------------------------------------------------------- collections (2 queries)

@dataclass(frozen=True)
class Collections:
    open_count: int
    open_amount: Decimal
    past_due_count: int
    past_due_amount: Decimal
    uncollectible_count: int
    uncollectible_amount: Decimal
    invoices: tuple[Invoice, ...] = field(default=())


def collections(*, now: datetime, listed: int = 20) -> Collections:
    """Open invoices; past due = open with a failed charge or a past-due customer; uncollectible
    issued since 1 January."""
    open_ = Q(status=Invoice.Status.OPEN)
    year = Q(status=Invoice.Status.UNCOLLECTIBLE, issued_at__year=now.year)
    agg = Invoice.objects.aggregate(
        oc=Count("pk", filter=open_), os=Sum("total", filter=open_),
        uc=Count("pk", filter=year), us=Sum("total", filter=year),
    )
    failed = Q(customer__status=Customer.Status.PAST_DUE) | Q(attempts__status="failed")
    due = Invoice.objects.filter(pk__in=Invoice.objects.filter(open_ & failed).values("pk")).aggregate(
        n=Count("pk"), s=Sum("total"))
    listing = tuple(Invoice.objects.filter(status__in=(Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE))
                    .select_related("customer").order_by("issued_at", "pk")[:listed])
    return Collections(agg["oc"], agg["os"] or ZERO, due["n"], due["s"] or ZERO,
                       agg["uc"], agg["us"] or ZERO, listing)


# ---------------------------------------------------------------- the whole page

@dataclass(frozen=True)
class Overview:
    now: datetime
    mrr: MrrNow
    movements: list[MonthMovements]
    nrr_year: Decimal | None
    cohorts: list[WeekCohort]
    calls: CallStats
    customers: list[CustomerRevenue]
    overage_months: list[tuple[date, Decimal]]
    collections: Collections

    @property
    def last_month(self) -> MonthMovements:
        """The last whole month: churn and NRR of a month still running would read too low."""
        return self.movements[-2]

    @property
    def overage_so_far(self) -> Decimal:
        return sum((r.overage_so_far for r in self.customers), ZERO)

    @property
    def overage_projected(self) -> Decimal:
        return sum((r.overage_projected for r in self.customers), ZERO)

    @property
    def top_by_calls(self) -> list[CustomerRevenue]:
        return sorted((r for r in self.customers if r.calls), key=lambda r: (-r.calls, r.customer_id))[:10]

    @property
    def top_by_revenue(self) -> list[CustomerRevenue]:
        return sorted((r for r in self.customers if r.revenue), key=lambda r: (-r.revenue, r.customer_id))[:10]


@contextmanager
def collector_paused() -> Iterator[None]:
    """The page builds a few hundred thousand small objects (a row, a timeline and a rating per
    customer) that form no reference cycles: Python's cyclic collector would walk them again and
    again as they grow (a fifth of the page's time with 10,000 customers, bench/dashboard.py).
    Reference counting still frees them; the collector runs again after, also on an error."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def dashboard_overview(*, now: datetime | None = None) -> Overview:
    with collector_paused():
        book = book_load(now=now)
        calls = call_stats(now=book.now)
        last_period = f"{month_start(book.now.date(), 1):%Y-%m}"
        customers = customer_revenue(book=book, calls=calls, last_totals=invoice_totals(period=last_period))
        return Overview(
            now=book.now, mrr=mrr_now(book=book), movements=mrr_movements(book=book),
            nrr_year=nrr_trailing_year(book=book), cohorts=signup_cohorts(book=book), calls=calls,
            customers=customers, overage_months=overage_by_month(today=book.now.date()),
            collections=collections(now=book.now),
        )
