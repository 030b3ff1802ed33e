"""The gateway's own arithmetic: amounts go to Stripe in exact cents, never rounded."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.gateway import amount_to_cents


@given(st.integers(min_value=0, max_value=10**12))
def test_every_amount_in_cents_goes_to_stripe_exactly(cents):
    amount = Decimal(cents) / 100
    assert amount_to_cents(amount.quantize(Decimal("0.01"))) == cents


@pytest.mark.parametrize("amount", ["0.001", "12.345", "1E-3"])
def test_an_amount_finer_than_a_cent_is_refused_not_rounded(amount):
    with pytest.raises(ValueError, match="not a whole number of cents"):
        amount_to_cents(Decimal(amount))
