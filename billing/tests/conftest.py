from __future__ import annotations

from datetime import date, datetime, timezone as dt_timezone

import pytest
import time_machine

from metering.models import UsageRecord
from tests.factories import CustomerFactory, seeded_plan


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=dt_timezone.utc)


def usage(customer, day: date, calls: int, product: str = "geocode") -> UsageRecord:
    return UsageRecord.objects.create(customer=customer, product=product, day=day, calls=calls)


def at(moment: datetime):
    """Freeze the clock at `moment` (use as a context manager)."""
    return time_machine.travel(moment, tick=False)


@pytest.fixture
def plans(db):
    return {slug: seeded_plan(slug) for slug in ("free", "starter", "pro", "enterprise")}


@pytest.fixture
def october_customer(plans):
    """On Starter since 1 October 2026, active: November is a whole month for it."""
    return CustomerFactory(plan=plans["starter"], created_at=utc(2026, 10, 1, 9))
