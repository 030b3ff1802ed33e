"""The pricing rule for one run of days on one set of terms (README "Billing"), once.

Every figure a customer or staff member reads (invoice, portal, /v1/usage, spend cap, dashboard)
is built from these four functions by `billing.rating`, which splits a period into runs.
"""
from __future__ import annotations

from decimal import Decimal

from core.money import money


def run_base(*, price: Decimal, days: int, days_in_month: int) -> Decimal:
    """The base fee of `days` days: price × days ÷ days in the month, half-up to cents."""
    return money(Decimal(price) * days / days_in_month)


def run_allowance(*, included_calls: int, days: int, days_in_month: int) -> int:
    """Included calls × days ÷ days in the month, rounded half-up to a whole call (exact, in integers)."""
    return (2 * included_calls * days + days_in_month) // (2 * days_in_month)


def overage_calls(*, calls: int, allowance: int, hard_cap: bool) -> int:
    """Calls beyond the allowance; a hard-capped plan never bills overage (its cap refuses them)."""
    return 0 if hard_cap else max(0, calls - allowance)


def overage_amount(*, calls: int, unit_price: Decimal) -> Decimal:
    return money(Decimal(unit_price) * calls)
