"""plans.pricing, rule by rule, against README "Billing" and "Plans" read literally.

The expected figures are recomputed here in exact fractions (`fractions.Fraction`, not the
Decimal arithmetic plans.pricing uses), with "rounded half-up" written out as floor(x + 1/2):

- base = price × days ÷ days in the month, rounded half-up to cents;
- allowance = included calls × days ÷ days in the month, rounded half-up to a whole call;
- overage = calls made on the run's days beyond its allowance × the run's overage price,
  never on a hard-capped plan, rounded half-up to cents.

A run is one or more consecutive days of one month, so its proration boundaries are 1 day and
the whole month (28 to 31 days).
"""
from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plans.pricing import overage_amount, overage_calls, run_allowance, run_base

STARTER = {"price": Decimal("49.00"), "included": 50_000, "unit": Decimal("0.001")}
PROFESSIONAL = {"price": Decimal("199.00"), "included": 500_000, "unit": Decimal("0.0005")}


def half_up(value: Fraction) -> int:
    """Round a non-negative amount to the nearest whole; a half goes up."""
    return math.floor(value + Fraction(1, 2))


def to_cents(value: Fraction) -> Decimal:
    return Decimal(half_up(value * 100)) / 100


def expected_base(price: Decimal, days: int, month: int) -> Decimal:
    return to_cents(Fraction(price) * days / month)


def expected_allowance(included: int, days: int, month: int) -> int:
    return half_up(Fraction(included * days, month))


def expected_overage(calls: int, allowance: int, hard_cap: bool, unit: Decimal) -> tuple[int, Decimal]:
    beyond = 0 if hard_cap or calls <= allowance else calls - allowance
    return beyond, to_cents(Fraction(unit) * beyond)


# Plan prices have 2 decimal places and overage prices 6 (plans.Terms).
prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("9999999999.99"), places=2)
unit_prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("10"), places=6)
included_calls = st.integers(min_value=0, max_value=10**12)
months = st.sampled_from([28, 29, 30, 31])


@st.composite
def runs(draw) -> tuple[int, int]:
    """(days, days in the month) of a run: from one day to the whole month."""
    month = draw(months)
    return draw(st.integers(min_value=1, max_value=month)), month


# --- base fee ---


@given(price=prices, run=runs())
def test_the_base_is_the_days_share_of_the_price_rounded_half_up_to_cents(price, run):
    days, month = run
    base = run_base(price=price, days=days, days_in_month=month)
    assert isinstance(base, Decimal)
    assert base == expected_base(price, days, month)
    assert base.as_tuple().exponent == -2


@given(price=prices, month=months)
def test_a_whole_month_bills_exactly_the_price(price, month):
    assert run_base(price=price, days=month, days_in_month=month) == price


@given(price=prices, run=runs())
def test_the_base_never_falls_as_a_run_gets_longer(price, run):
    days, month = run
    if days < month:
        assert run_base(price=price, days=days, days_in_month=month) <= run_base(
            price=price, days=days + 1, days_in_month=month)


@given(price=prices, run=runs())
def test_two_runs_that_split_a_month_bill_the_price_to_within_a_cent(price, run):
    # Each line is rounded on its own, so a split month may differ from the price by one cent.
    days, month = run
    if days < month:
        both = run_base(price=price, days=days, days_in_month=month) + run_base(
            price=price, days=month - days, days_in_month=month)
        assert abs(both - price) <= Decimal("0.01")


@pytest.mark.parametrize("price, days, month, base", [
    (Decimal("49"), 1, 30, Decimal("1.63")),       # a run of one day: 1.6333…
    (Decimal("49"), 1, 31, Decimal("1.58")),       # 1.5806…
    (Decimal("49"), 1, 28, Decimal("1.75")),       # exact
    (Decimal("49"), 10, 30, Decimal("16.33")),     # 16.333…
    (Decimal("0.75"), 1, 30, Decimal("0.03")),     # 0.025: the half goes up, not to the even 0.02
    (Decimal("0.15"), 1, 30, Decimal("0.01")),     # 0.005
    (Decimal("0.14"), 1, 30, Decimal("0.00")),     # 0.00466…
    (Decimal("0"), 17, 30, Decimal("0.00")),       # Free
    (Decimal("49"), 30, 30, Decimal("49.00")),
    (Decimal("999"), 29, 29, Decimal("999.00")),   # a whole leap February
])
def test_base_by_hand(price, days, month, base):
    assert run_base(price=price, days=days, days_in_month=month) == base


# --- allowance ---


@given(included=included_calls, run=runs())
def test_the_allowance_is_the_days_share_of_the_included_calls_rounded_half_up(included, run):
    days, month = run
    allowance = run_allowance(included_calls=included, days=days, days_in_month=month)
    assert type(allowance) is int
    assert allowance == expected_allowance(included, days, month)


@given(included=included_calls, month=months)
def test_a_whole_month_includes_exactly_the_plans_calls(included, month):
    assert run_allowance(included_calls=included, days=month, days_in_month=month) == included


@given(included=included_calls, run=runs())
def test_two_runs_that_split_a_month_include_the_plans_calls_to_within_one(included, run):
    days, month = run
    if days < month:
        both = run_allowance(included_calls=included, days=days, days_in_month=month) + run_allowance(
            included_calls=included, days=month - days, days_in_month=month)
        assert abs(both - included) <= 1


@pytest.mark.parametrize("included, days, month, allowance", [
    (0, 30, 30, 0),                 # zero allowance: a plan that includes nothing
    (1, 1, 31, 0),                  # 1/31 of a call rounds down to none
    (1, 1, 2, 1),                   # a half rounds up
    (75, 1, 30, 3),                 # 2.5 -> 3, not to the even 2
    (44, 1, 30, 1),                 # 1.466… -> 1
    (50_000, 1, 30, 1_667),         # a run of one day: 1,666.67
    (50_000, 29, 30, 48_333),
    (50_000, 21, 31, 33_871),       # README's spend-cap example: Starter 11–31 March
    (1_000, 28, 28, 1_000),
])
def test_allowance_by_hand(included, days, month, allowance):
    assert run_allowance(included_calls=included, days=days, days_in_month=month) == allowance


# --- overage ---


@given(calls=st.integers(min_value=0, max_value=10**12), allowance=st.integers(min_value=0, max_value=10**12),
       hard_cap=st.booleans(), unit=unit_prices)
def test_overage_is_the_calls_beyond_the_allowance_times_the_price_never_on_a_hard_cap(calls, allowance, hard_cap,
                                                                                        unit):
    beyond = overage_calls(calls=calls, allowance=allowance, hard_cap=hard_cap)
    amount = overage_amount(calls=beyond, unit_price=unit)
    assert (beyond, amount) == expected_overage(calls, allowance, hard_cap, unit)
    assert amount.as_tuple().exponent == -2


@given(allowance=st.integers(min_value=0, max_value=10**9), extra=st.integers(min_value=0, max_value=10**9))
def test_each_call_past_the_allowance_is_one_overage_call(allowance, extra):
    assert overage_calls(calls=allowance + extra, allowance=allowance, hard_cap=False) == extra
    assert overage_calls(calls=allowance + extra, allowance=allowance, hard_cap=True) == 0


def test_exactly_at_the_allowance_nothing_is_billed_and_one_call_over_is():
    assert overage_calls(calls=50_000, allowance=50_000, hard_cap=False) == 0
    assert overage_calls(calls=50_001, allowance=50_000, hard_cap=False) == 1
    assert overage_calls(calls=49_999, allowance=50_000, hard_cap=False) == 0
    # One call at $0.001 is a tenth of a cent: the line rounds to $0.00; five calls are half a cent, rounded up.
    assert overage_amount(calls=1, unit_price=Decimal("0.001")) == Decimal("0.00")
    assert overage_amount(calls=5, unit_price=Decimal("0.001")) == Decimal("0.01")
    assert overage_amount(calls=1, unit_price=Decimal("0.25")) == Decimal("0.25")


def test_with_a_zero_allowance_every_call_is_overage():
    allowance = run_allowance(included_calls=0, days=30, days_in_month=30)
    assert overage_calls(calls=1, allowance=allowance, hard_cap=False) == 1
    assert overage_calls(calls=0, allowance=allowance, hard_cap=False) == 0
    assert overage_calls(calls=1, allowance=allowance, hard_cap=True) == 0


def test_a_hard_capped_plan_never_bills_overage():
    # Free: 1,000 calls, hard cap (README "Plans").
    assert overage_calls(calls=1_000_000, allowance=1_000, hard_cap=True) == 0
    assert overage_amount(calls=0, unit_price=Decimal("0")) == Decimal("0.00")


# --- README "Billing"'s worked examples, end to end through the four functions ---


def bill(plan: dict, *, days: int, month: int, calls: int, hard_cap: bool = False) -> tuple[Decimal, int, int, Decimal]:
    base = run_base(price=plan["price"], days=days, days_in_month=month)
    allowance = run_allowance(included_calls=plan["included"], days=days, days_in_month=month)
    beyond = overage_calls(calls=calls, allowance=allowance, hard_cap=hard_cap)
    return base, allowance, beyond, overage_amount(calls=beyond, unit_price=plan["unit"])


def test_readme_upgrade_mid_november():
    # Starter 1–16 Nov with 350,000 calls, then Professional 17–30 Nov with 250,000: $450.66.
    starter = bill(STARTER, days=16, month=30, calls=350_000)
    professional = bill(PROFESSIONAL, days=14, month=30, calls=250_000)
    assert starter == (Decimal("26.13"), 26_667, 323_333, Decimal("323.33"))
    assert professional == (Decimal("92.87"), 233_333, 16_667, Decimal("8.33"))
    assert starter[0] + starter[3] + professional[0] + professional[3] == Decimal("450.66")


def test_readme_a_whole_starter_november():
    # 2,000,010 calls on a Starter month: $49.00 + $1,950.01.
    assert bill(STARTER, days=30, month=30, calls=2_000_010) == (
        Decimal("49.00"), 50_000, 1_950_010, Decimal("1950.01"))


def test_readme_six_days_after_a_trial():
    # Trial 10–24 Nov; 25–30 Nov bill $9.80 and include 10,000 calls.
    assert bill(STARTER, days=6, month=30, calls=0) == (Decimal("9.80"), 10_000, 0, Decimal("0.00"))


def test_readme_a_signup_at_the_raised_price():
    # Starter raised to $59: a signup on 15 November pays 59 × 16/30.
    assert run_base(price=Decimal("59"), days=16, days_in_month=30) == Decimal("31.47")


def test_readme_spend_cap_march():
    # Professional 1–10 March, Starter 11–31: fixed $64.19 + $33.19; 52,624 overage calls round to $52.62.
    assert run_base(price=PROFESSIONAL["price"], days=10, days_in_month=31) == Decimal("64.19")
    assert run_base(price=STARTER["price"], days=21, days_in_month=31) == Decimal("33.19")
    assert overage_amount(calls=52_624, unit_price=STARTER["unit"]) == Decimal("52.62")
