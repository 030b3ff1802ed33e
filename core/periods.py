"""Billing periods: calendar months in UTC, named YYYY-MM (README "Billing")."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone as dt_timezone

from django.core.exceptions import ValidationError

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def period_bounds(period: str) -> tuple[date, date]:
    """First day of the period and first day of the next one; a clear error for anything else."""
    match = _PERIOD.match(period or "")
    if not match:
        raise ValidationError({"period": f"Expected a month as YYYY-MM, got {period!r}."})
    year, month = int(match.group(1)), int(match.group(2))
    return date(year, month, 1), date(year + (month == 12), month % 12 + 1, 1)


def period_of(moment: datetime | date) -> str:
    if isinstance(moment, datetime):
        moment = moment.astimezone(dt_timezone.utc)
    return f"{moment:%Y-%m}"


def period_previous(period: str) -> str:
    start, _ = period_bounds(period)
    return f"{start - timedelta(days=1):%Y-%m}"


def period_next(period: str) -> str:
    _, end = period_bounds(period)
    return f"{end:%Y-%m}"


def days_in_period(period: str) -> int:
    start, end = period_bounds(period)
    return (end - start).days


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=dt_timezone.utc)


def day_of(moment: datetime) -> date:
    return moment.astimezone(dt_timezone.utc).date()
