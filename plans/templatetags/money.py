"""Template filters that format Decimal amounts without ever going through float."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template
from django.template.defaultfilters import pluralize

from core.money import CENT
from core.periods import days_in_period

register = template.Library()


def _decimal(value) -> Decimal | None:
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None


MINUS = "\u2212"  # the minus sign, not a hyphen: "−$199" reads as a negative amount, "$-199" does not


def _figure(amount: Decimal) -> str:
    """The digits of an amount, unsigned: `49` when whole, `49.50` otherwise, `1,250`."""
    amount = abs(amount)
    if amount == amount.to_integral_value():
        return f"{amount:,.0f}"
    return f"{amount.quantize(CENT, rounding=ROUND_HALF_UP):,}"


def _signed(amount: Decimal, digits: str) -> str:
    return f"{MINUS}{digits}" if amount < 0 and digits.strip("0.,$") else digits


@register.filter
def money(value) -> str:
    """`49` for whole amounts, `49.50` otherwise, with thousands separators: `1,250`, `−12.50`."""
    amount = _decimal(value)
    if amount is None:
        return ""
    return _signed(amount, _figure(amount))


@register.filter
def usd(value) -> str:
    """`money` with its dollar sign, the sign first: `$49`, `$1,250.50`, `−$199`."""
    amount = _decimal(value)
    if amount is None:
        return ""
    return _signed(amount, f"${_figure(amount)}")


@register.filter
def unit_price(value) -> str:
    """A per-call price with exactly the digits it has: `0.001`, `0.0005`, never `1E-3`."""
    amount = _decimal(value)
    if amount is None:
        return ""
    return f"{amount.normalize():f}"


@register.filter
def dollars(value) -> str:
    """Cents always shown, as on a receipt: `$49.00`, `$1,999.00`, `−$12.50` (a credit)."""
    amount = _decimal(value)
    if amount is None:
        return ""
    cents = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    return f"{MINUS if cents < 0 else ''}${abs(cents):,}"


def _count(quantity: Decimal) -> str:
    return f"{quantity:,.0f}" if quantity == quantity.to_integral_value() else f"{quantity.normalize():,f}"


@register.filter
def line_rate(line, period: str) -> str:
    """What an invoice line's amount is the product of, as a person checks it:
    base "$49.00 × 10/30 days" (the monthly price × the line's days ÷ the days in `period`),
    overage "401,667 × $0.001". A line whose amount is not that product, rounded half-up to
    cents (a credit, or a row written under another rule), shows its quantity alone."""
    quantity, price, amount = _decimal(line.quantity), _decimal(line.unit_price), _decimal(line.amount)
    if quantity is None or price is None or amount is None or line.kind == "credit":
        return ""
    if line.kind == "base":
        days = days_in_period(period)
        if (price * quantity / days).quantize(CENT, rounding=ROUND_HALF_UP) == amount:
            return f"{dollars(price)} × {_count(quantity)}/{days} days"
        return f"{_count(quantity)} day{pluralize(quantity)}"
    if (price * quantity).quantize(CENT, rounding=ROUND_HALF_UP) == amount:
        return f"{_count(quantity)} × ${unit_price(price)}"
    return f"{_count(quantity)} call{pluralize(quantity)}"
