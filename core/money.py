"""Money is Decimal, and every amount a customer reads is rounded half-up to cents (README "Plans" and "Billing")."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HALF_CENT = Decimal("0.005")
ZERO = Decimal("0.00")


def money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def whole_half_up(value: Decimal) -> int:
    """A fraction of calls as a whole number of calls, halves up (a prorated allowance)."""
    return int(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))
