"""The per-run pricing rule (README "Billing"), checked against the rule's words in plain Decimal."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from plans.pricing import overage_amount, overage_calls, run_allowance, run_base

prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("1"), places=6)


@given(calls=st.integers(min_value=0, max_value=10**10), price=prices)
def test_overage_is_calls_times_price_rounded_half_up_to_cents(calls, price):
    amount = overage_amount(calls=calls, unit_price=price)
    assert isinstance(amount, Decimal)
    assert amount == (Decimal(calls) * price).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert abs(amount - Decimal(calls) * price) <= Decimal("0.005")


def test_half_a_cent_rounds_up():
    assert overage_amount(calls=5, unit_price=Decimal("0.001")) == Decimal("0.01")
    assert overage_amount(calls=4, unit_price=Decimal("0.001")) == Decimal("0.00")


@given(included=st.integers(min_value=0, max_value=10**9), days=st.integers(min_value=1, max_value=31),
       month=st.sampled_from([28, 29, 30, 31]))
def test_the_allowance_is_the_days_share_of_the_included_calls_rounded_half_up(included, days, month):
    days = min(days, month)
    exact = Decimal(included) * days / month
    assert run_allowance(included_calls=included, days=days, days_in_month=month) == int(exact.quantize(Decimal(1), ROUND_HALF_UP))


def test_allowance_and_base_by_hand():
    # 50,000 x 29/30 = 48,333.33 -> 48,333; 50,000 x 1/30 = 1,666.67 -> 1,667; 1,000 x 1/2 = 500.
    assert [run_allowance(included_calls=50_000, days=d, days_in_month=30) for d in (29, 1, 30)] == [48_333, 1_667, 50_000]
    assert run_allowance(included_calls=1, days=1, days_in_month=2) == 1  # a half rounds up
    # 49 x 10/30 = 16.333.. -> 16.33; 199 x 14/30 = 92.866.. -> 92.87.
    assert run_base(price=Decimal("49"), days=10, days_in_month=30) == Decimal("16.33")
    assert run_base(price=Decimal("199"), days=14, days_in_month=30) == Decimal("92.87")


def test_a_hard_capped_run_bills_no_overage():
    assert overage_calls(calls=5_000, allowance=1_000, hard_cap=True) == 0
    assert overage_calls(calls=5_000, allowance=1_000, hard_cap=False) == 4_000
    assert overage_calls(calls=500, allowance=1_000, hard_cap=False) == 0
