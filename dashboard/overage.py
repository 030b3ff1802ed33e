"""This period's overage per customer for the staff dashboard, so far and projected, by the rules
its invoice uses (billing.rating, plans.pricing), never by a rule of the dashboard's own."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.db import connection

from billing.models import PlanChange
from billing.rating import History, Rating, rate
from billing.selectors import projected_calls
from core.money import ZERO
from core.periods import day_start, period_bounds, period_of
from metering.models import UsageRecord
from plans.models import Terms
from plans.pricing import overage_amount, overage_calls, run_allowance

from .book import Book
from .usage_stats import CallStats


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
