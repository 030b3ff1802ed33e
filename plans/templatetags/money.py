"""Template filters that format Decimal amounts without ever going through float."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template

register = template.Library()

CENT = Decimal("0.01")


def _decimal(value) -> Decimal | None:
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None


@register.filter
def money(value) -> str:
    """`49` for whole amounts, `49.50` otherwise, with thousands separators: `1,250`."""
    amount = _decimal(value)
    if amount is None:
        return ""
    if amount == amount.to_integral_value():
        return f"{amount:,.0f}"
    return f"{amount.quantize(CENT, rounding=ROUND_HALF_UP):,}"


@register.filter
def unit_price(value) -> str:
    """A per-call price with exactly the digits it has: `0.001`, `0.0005`, never `1E-3`."""
    amount = _decimal(value)
    if amount is None:
        return ""
    return f"{amount.normalize():f}"
