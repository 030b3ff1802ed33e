"""Arithmetic the staff dashboard's figures share: calendar months counted back from a day (UTC,
as billing periods are) and percentages to one decimal."""
from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal


def month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def percent(part: Decimal | int, whole: Decimal | int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
