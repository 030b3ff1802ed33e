"""billing.rating by hand: every figure below is worked out in its comment from the words of README "Billing"."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from billing.rating import BALANCE_CREDIT, History, rate
from core.money import money


@dataclass(frozen=True)
class T:
    """Terms as the rating reads them (plans.Terms has the same attributes)."""

    pk: int
    plan_id: int
    name: str
    price: Decimal
    included_calls: int
    overage_price: Decimal
    hard_cap: bool = False


FREE = T(1, 1, "Free", Decimal("0"), 1_000, Decimal("0"), hard_cap=True)
STARTER = T(2, 2, "Starter", Decimal("49"), 50_000, Decimal("0.001"))
PRO = T(3, 3, "Professional", Decimal("199"), 500_000, Decimal("0.0005"))
ENTERPRISE = T(4, 4, "Enterprise", Decimal("999"), 5_000_000, Decimal("0.0002"))
STARTER_2027 = T(5, 2, "Starter", Decimal("59"), 60_000, Decimal("0.001"))  # Starter after a price edit
TERMS = {t.pk: t for t in (FREE, STARTER, PRO, ENTERPRISE, STARTER_2027)}
NOV = "2026-11"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def nov(day: int) -> date:
    return date(2026, 11, day)


def spread(total: int, days: range) -> dict[date, int]:
    """`total` calls over November's `days`, the remainder on the first."""
    days = list(days)
    each, rest = divmod(total, len(days))
    return {nov(d): each + (rest if i == 0 else 0) for i, d in enumerate(days)}


def charges(rating) -> list[tuple[str, Decimal, Decimal]]:
    return [(line.kind, line.quantity, line.amount) for line in rating.lines if line.amount]


def october_customer(*changes, trial_ends_at=None, trial_starts_at=None, signup=STARTER) -> History:
    return History(created_at=utc(2026, 10, 1, 9), signup_terms_id=signup.pk, trial_ends_at=trial_ends_at,
                   trial_starts_at=trial_starts_at, changes=tuple(changes))


def test_a_whole_month_on_one_plan_bills_the_price_and_the_overage_beyond_the_included_calls():
    rating = rate(customer_id=1, period=NOV, history=october_customer(), terms=TERMS,
                  daily_calls=spread(60_000, range(1, 31)))
    # base 49 × 30/30 = 49.00; allowance 50,000 × 30/30; overage 10,000 × 0.001 = 10.00
    assert charges(rating) == [("base", 30, Decimal("49.00")), ("overage", 10_000, Decimal("10.00"))]
    assert rating.total == Decimal("59.00") and rating.calls == 60_000


def test_a_move_to_free_at_2350_on_the_last_day_keeps_the_months_overage():
    # The first row: Starter with 2,000,010 calls, to Free at 23:50 on Nov 30. Nov 30
    # started on Starter, so all 30 days are one Starter run: 49.00 + (2,000,010 − 50,000) × 0.001.
    history = october_customer((utc(2026, 11, 30, 23, 50), FREE.pk, "customer"))
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=spread(2_000_010, range(1, 31)))
    assert charges(rating) == [("base", 30, Decimal("49.00")), ("overage", 1_950_010, Decimal("1950.01"))]
    assert rating.total == Decimal("1999.01")


def test_an_enterprise_month_moved_to_starter_at_month_end_pays_enterprise_terms():
    # 4,900,000 calls within Enterprise's 5,000,000: 999.00, no overage (it was 5,848.99).
    history = october_customer((utc(2026, 11, 30, 23, 50), STARTER.pk, "customer"), signup=ENTERPRISE)
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=spread(4_900_000, range(1, 31)))
    assert charges(rating) == [("base", 30, Decimal("999.00"))]


def test_an_upgrade_mid_month_splits_the_month_into_two_runs_each_with_its_own_allowance():
    # Starter 1–10 Nov, Pro from 11 Nov (changed at 15:00 on the 10th: the 10th started on Starter).
    history = october_customer((utc(2026, 11, 10, 15), PRO.pk, "customer"))
    usage = {**spread(30_000, range(1, 11)), **spread(100_000, range(11, 31))}
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=usage)
    # Starter: 49 × 10/30 = 16.333… → 16.33; allowance 50,000 × 10/30 = 16,666.67 → 16,667;
    #          overage (30,000 − 16,667) × 0.001 = 13.333 → 13.33.
    # Pro:     199 × 20/30 = 132.666… → 132.67; allowance 500,000 × 20/30 → 333,333; no overage.
    assert charges(rating) == [
        ("base", 10, Decimal("16.33")), ("overage", 13_333, Decimal("13.33")), ("base", 20, Decimal("132.67")),
    ]
    assert [(r.first, r.last, r.allowance) for r in rating.runs] == [(nov(1), nov(10), 16_667), (nov(11), nov(30), 333_333)]
    assert rating.lines[1].description == "Starter, 1–10 Nov: 13,333 calls beyond 16,667 included"
    assert rating.total == Decimal("162.33")


def test_switching_away_at_2359_and_back_at_0001_saves_nothing():
    history = october_customer((utc(2026, 11, 14, 23, 59), FREE.pk, "customer"),
                               (utc(2026, 11, 15, 0, 1), STARTER.pk, "customer"))
    # 3,000 calls a day, none on the 15th: that day started on Free, whose monthly cap (1,000)
    # the customer is long past, so the meter refuses its calls.
    usage = {day: calls for day, calls in spread(90_000, range(1, 31)).items() if day != nov(15)}
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=usage)
    # Starter 1–14: 49 × 14/30 = 22.866… → 22.87; allowance 23,333; 42,000 calls → 18,667 over → 18.67.
    # Free 15 Nov: no fee. Starter 16–30: 49 × 15/30 = 24.50; allowance 25,000; 45,000 → 20.00.
    assert charges(rating) == [
        ("base", 14, Decimal("22.87")), ("overage", 18_667, Decimal("18.67")),
        ("base", 15, Decimal("24.50")), ("overage", 20_000, Decimal("20.00")),
    ]
    # Staying on Starter with the same 87,000 calls: 49.00 + 37,000 × 0.001 = 86.00.
    stayed = rate(customer_id=1, period=NOV, history=october_customer(), terms=TERMS, daily_calls=usage)
    assert (rating.total, stayed.total) == (Decimal("86.04"), Decimal("86.00"))


def test_trial_days_cost_nothing_and_their_calls_count_toward_no_allowance():
    history = History(created_at=utc(2026, 11, 3, 12), signup_terms_id=STARTER.pk,
                      trial_ends_at=utc(2026, 11, 17, 12))
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=spread(56_000, range(3, 31)))
    # Trial: the 3rd (signup 12:00) to the 17th (its start, 00:00, is before 12:00): 15 days.
    # Starter 18–30 Nov: 13 days → 49 × 13/30 = 21.233 → 21.23; allowance 21,667;
    # calls 13 × 2,000 = 26,000 → overage 4,333 → 4.33. Trial calls: 15 × 2,000 = 30,000, free.
    assert [(line.kind, line.quantity, line.amount) for line in rating.lines] == [
        ("base", 15, Decimal("0.00")), ("base", 13, Decimal("21.23")), ("overage", 4_333, Decimal("4.33")),
    ]
    assert (rating.calls, rating.trial_calls) == (26_000, 30_000)


def test_a_trial_started_later_by_a_plan_change_leaves_the_days_before_it_billed():
    history = october_customer((utc(2026, 11, 10, 15), STARTER.pk, "customer"), signup=FREE,
                               trial_starts_at=utc(2026, 11, 10, 15), trial_ends_at=utc(2026, 11, 24, 15))
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls={})
    # Free 1–10, trial 11–24 (each day starts inside the window), Starter 25–30: 49 × 6/30 = 9.80.
    assert [(r.terms.name, r.first, r.last) for r in rating.runs] == [("Free", nov(1), nov(10)), ("Starter", nov(25), nov(30))]
    assert rating.total == Decimal("9.80") and len(rating.trial_days) == 14


def test_signup_mid_month_bills_from_the_signup_day():
    history = History(created_at=utc(2026, 11, 21, 18), signup_terms_id=PRO.pk)
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls={})
    # 21–30 Nov: 10 days → 199 × 10/30 = 66.33.
    assert charges(rating) == [("base", 10, Decimal("66.33"))]


def test_a_cancellation_ends_billing_after_the_day_it_happened():
    history = october_customer((utc(2026, 11, 12, 16), STARTER.pk, "cancelled"))
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=spread(24_000, range(1, 13)))
    # 1–12 Nov (the 12th started before the cancellation): 49 × 12/30 = 19.60; allowance 20,000;
    # overage 4,000 → 4.00.
    assert charges(rating) == [("base", 12, Decimal("19.60")), ("overage", 4_000, Decimal("4.00"))]


def test_hard_capped_terms_never_bill_overage_and_the_cap_is_not_prorated_here():
    history = History(created_at=utc(2026, 10, 1), signup_terms_id=FREE.pk)
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=spread(5_000, range(1, 31)))
    assert rating.total == Decimal("0.00") and rating.runs[0].overage_calls == 0


def test_grandfathered_terms_keep_their_price_after_a_plan_edit():
    history = october_customer()  # signed up on the old Starter terms
    later = History(created_at=utc(2026, 11, 15), signup_terms_id=STARTER_2027.pk)
    assert rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls={}).total == Decimal("49.00")
    # 16 days on the new terms: 59 × 16/30 = 31.466… → 31.47.
    assert rate(customer_id=2, period=NOV, history=later, terms=TERMS, daily_calls={}).total == Decimal("31.47")


def test_credit_from_the_balance_is_used_up_to_the_charges_and_a_hard_stop_bounds_the_total():
    history = october_customer()
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls={}, credit_balance=Decimal("80"))
    assert rating.total == Decimal("0.00") and rating.credit_applied == Decimal("49.00")
    assert rating.lines[-1].description == BALANCE_CREDIT
    capped = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=spread(500_000, range(1, 31)),
                  spend_cap=Decimal("199"))
    # 49.00 + 450.00 overage, bounded by the $199 hard stop.
    assert (capped.charges, capped.total) == (Decimal("499.00"), Decimal("199.00"))


# ---------------------------------------------------------------- properties

TERMS_IDS = [t.pk for t in TERMS.values()]
moments = st.integers(min_value=-40 * 24 * 60, max_value=60 * 24 * 60).map(lambda m: utc(2026, 11, 1) + timedelta(minutes=m))
histories = st.builds(
    lambda created, signup, changes, trial: History(
        created_at=created, signup_terms_id=signup,
        changes=tuple(sorted((max(at, created), t, r) for at, t, r in changes)),
        trial_ends_at=created + timedelta(days=trial) if trial else None,
    ),
    moments, st.sampled_from(TERMS_IDS),
    st.lists(st.tuples(moments, st.sampled_from(TERMS_IDS), st.sampled_from(["customer", "cancelled", "reactivated"])),
             max_size=6),
    st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
)
usage = st.dictionaries(st.integers(min_value=1, max_value=30).map(nov), st.integers(min_value=0, max_value=3_000_000), max_size=10)


@settings(max_examples=300, deadline=None)
@given(history=histories, daily=usage, credit=st.decimals(min_value=0, max_value=5000, places=2))
def test_any_month_totals_its_lines_never_goes_below_zero_and_bills_at_most_a_month_of_the_dearest_base(history, daily, credit):
    rating = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=daily, credit_balance=credit)
    assert rating.total == sum((line.amount for line in rating.lines), Decimal("0"))
    assert rating.total >= 0 and all(line.amount == money(line.amount) for line in rating.lines)
    assert rating.base <= max(t.price for t in TERMS.values())
    assert sum(run.days for run in rating.runs) + len(rating.trial_days) <= 30
    assert rating.calls + rating.trial_calls <= sum(daily.values())


@settings(max_examples=300, deadline=None)
@given(history=histories, daily=usage, later=st.lists(st.tuples(
    st.integers(min_value=0, max_value=90 * 24 * 60).map(lambda m: utc(2026, 12, 1) + timedelta(minutes=m)),
    st.sampled_from(TERMS_IDS), st.sampled_from(["customer", "cancelled", "reactivated"])), max_size=4))
def test_nothing_after_the_period_changes_its_rating(history, daily, later):
    """What selectors pass in stops at the period's end; even if later changes reached the pure
    function, the period's days start before them and could not see them."""
    extended = History(created_at=history.created_at, signup_terms_id=history.signup_terms_id,
                       trial_ends_at=history.trial_ends_at,
                       changes=tuple(sorted((*history.changes, *((max(at, history.created_at), t, r) for at, t, r in later)))))
    first = rate(customer_id=1, period=NOV, history=history, terms=TERMS, daily_calls=daily)
    second = rate(customer_id=1, period=NOV, history=extended, terms=TERMS, daily_calls=daily)
    assert first == second
