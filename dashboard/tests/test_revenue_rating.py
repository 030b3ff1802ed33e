"""The dashboard's overage figures are billing's rating (billing.rating.rate), fast path included.

Most customers' month is one run on one set of terms; the dashboard rates them with
plans.pricing's rule on the month's calls instead of calling rate() ten thousand times, and
projects the other customers' runs without a second rate(). These properties hold both paths to
rate() run on the usage so far and again on the projected calls (what the portal does), for any
history and any moment of the month. Pure: no database (the terms are unsaved rows).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from billing.rating import period_days, rate
from billing.selectors import projected_calls
from dashboard.book import Book
from dashboard.mrr import ChangeRow, CustomerRow
from dashboard.overage import NOTHING_BILLED, RATE_IT, MonthRating, Overage
from plans.models import Terms

START = datetime(2026, 11, 1, tzinfo=dt_timezone.utc)
TERMS = {
    1: Terms(pk=1, plan_id=1, name="Starter", price=Decimal("49"), included_calls=50_000,
             overage_price=Decimal("0.001"), hard_cap=False, rate_per_minute=100),
    2: Terms(pk=2, plan_id=2, name="Free", price=Decimal("0"), included_calls=1_000,
             overage_price=Decimal("0"), hard_cap=True, rate_per_minute=10),
    3: Terms(pk=3, plan_id=3, name="Professional", price=Decimal("199"), included_calls=500_000,
             overage_price=Decimal("0.0005"), hard_cap=False, rate_per_minute=500),
    4: Terms(pk=4, plan_id=1, name="Starter", price=Decimal("59"), included_calls=40_000,
             overage_price=Decimal("0.002"), hard_cap=False, rate_per_minute=100),  # after a price edit
}

moments = st.integers(min_value=-90 * 24 * 60, max_value=30 * 24 * 60 - 1).map(lambda m: START + timedelta(minutes=m))
cases = st.fixed_dictionaries({
    "created": moments,
    "signup": st.sampled_from(sorted(TERMS)),
    "changes": st.lists(st.tuples(moments, st.sampled_from(sorted(TERMS)),
                                  st.sampled_from(["customer", "cancelled", "reactivated", "trial_ended"])), max_size=4),
    "trial_days": st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
    "trial_later": st.one_of(st.none(), st.integers(min_value=0, max_value=40 * 24 * 60)),  # minutes after signup
    "now": st.integers(min_value=0, max_value=30 * 86_400 - 1).map(lambda s: START + timedelta(seconds=s)),
    "calls": st.dictionaries(st.integers(min_value=0, max_value=29), st.integers(min_value=0, max_value=3_000_000),
                             max_size=6),
})


def _month(case: dict) -> tuple[MonthRating, dict[date, int]]:
    created, now = min(case["created"], case["now"]), case["now"]
    changes = sorted((max(at, created), terms, reason) for at, terms, reason in case["changes"] if max(at, created) <= now)
    trial_from = created + timedelta(minutes=case["trial_later"]) if case.get("trial_later") else None
    trial_end = (trial_from or created) + timedelta(days=case["trial_days"]) if case["trial_days"] else None
    row = CustomerRow(1, created, trial_end, "active", 1, changes[-1][1] if changes else case["signup"], case["signup"],
                      trial_from)
    book = Book(now=now, plans={}, terms=TERMS, customers={1: row}, companies={1: "X"},
                changes={1: [ChangeRow(at, terms, reason) for at, terms, reason in changes]}, timelines={})
    # Calls are made on days the customer existed, once the day (or the signup) has begun.
    daily = {START.date() + timedelta(days=n): calls for n, calls in case["calls"].items()
             if created.date() <= START.date() + timedelta(days=n) and max(START + timedelta(days=n), created) < now}
    return MonthRating(book=book), daily


def _by_rate(month: MonthRating, daily: dict[date, int]) -> Overage:
    """The reference: rate() on the usage so far, and rate() again with projected_calls added,
    as the portal's projected invoice does."""
    history = month.history(1)
    so_far = rate(customer_id=1, period="2026-11", history=history, terms=TERMS, daily_calls=daily)
    future = projected_calls(rating_days=period_days(period="2026-11", history=history), daily=daily,
                             history=history, now=month.now)
    if future is None:
        return Overage(so_far.overage, so_far.overage)
    projected = {day: daily.get(day, 0) + future.get(day, 0) for day in {*daily, *future}}
    return Overage(so_far.overage, rate(customer_id=1, period="2026-11", history=history, terms=TERMS,
                                        daily_calls=projected).overage)


@settings(max_examples=500, deadline=None)
@given(case=cases)
def test_the_dashboard_overage_is_what_rate_gives_on_either_path(case):
    month, daily = _month(case)
    expected = _by_rate(month, daily)
    run = month.one_run(1)

    assert month.rated_overage(1, daily) == expected
    if run == NOTHING_BILLED:
        assert expected == Overage(Decimal("0.00"), Decimal("0.00"))
    elif run != RATE_IT:
        assert month.one_run_overage(*run, sum(daily.values())) == expected


@settings(max_examples=500, deadline=None)
@given(case=cases)
def test_the_one_run_path_is_taken_only_for_one_run_to_the_months_end_or_no_billed_day(case):
    month, daily = _month(case)
    run = month.one_run(1)
    rating = rate(customer_id=1, period="2026-11", history=month.history(1), terms=TERMS, daily_calls=daily)
    if run == NOTHING_BILLED:
        assert not rating.has_days
    elif run != RATE_IT:
        terms, since = run
        assert [(r.terms.pk, r.first, r.last) for r in rating.runs] == [(terms.pk, since.date(), date(2026, 11, 30))]
        assert not rating.trial_days


@given(calls=st.integers(min_value=0, max_value=50_000_000),
       seconds=st.integers(min_value=0, max_value=30 * 86_400 - 1), terms_id=st.sampled_from(sorted(TERMS)),
       signed_up=st.integers(min_value=-60 * 86_400, max_value=30 * 86_400 - 1))
@settings(max_examples=300, deadline=None)
def test_any_call_count_at_any_moment_rates_the_same_both_ways(calls, seconds, terms_id, signed_up):
    now = START + timedelta(seconds=seconds)
    month, daily = _month({"created": START + timedelta(seconds=signed_up), "signup": terms_id, "changes": [],
                           "trial_days": None, "now": now, "calls": {now.day - 1: calls}})

    run = month.one_run(1)
    assert run[0] is TERMS[terms_id]
    assert month.one_run_overage(*run, sum(daily.values())) == _by_rate(month, daily)


def test_a_projection_waits_for_a_whole_day_of_the_month():
    month, _ = _month({"created": START - timedelta(days=60), "signup": 1, "changes": [], "trial_days": None,
                       "now": START + timedelta(hours=20), "calls": {}})

    # 80,000 calls in the first 20 hours: 30,000 beyond so far; no projection before a whole day.
    assert month.one_run_overage(TERMS[1], START, 80_000) == Overage(Decimal("30.00"), Decimal("30.00"))
