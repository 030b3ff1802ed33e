"""The overage rule, once: the API's usage report, the portal and the invoice all call it."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def overage_calls(*, calls: int, included_calls: int, hard_cap: bool) -> int:
    """Calls beyond the included ones; a hard-capped plan never bills overage."""
    return 0 if hard_cap else max(0, calls - included_calls)


def overage_amount(*, calls: int, unit_price: Decimal) -> Decimal:
    """Money is Decimal end to end; invoice lines round half-up to cents (DESIGN §3, §6)."""
    return (unit_price * calls).quantize(CENT, rounding=ROUND_HALF_UP)
