from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from metering.apis import overage_amount

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
