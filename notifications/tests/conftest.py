from __future__ import annotations

from datetime import datetime, timezone

import pytest

from .receiver import Receiver

LONG_AGO = datetime(2020, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


@pytest.fixture
def customer(customer):
    """A customer since last year: this month's invoice carries the whole base fee (no proration)."""
    customer.created_at = LONG_AGO
    customer.save(update_fields=["created_at"])
    return customer
