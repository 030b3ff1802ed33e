"""Reads for the customer portal."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis
from django.utils import timezone

from accounts.models import ApiKey, Customer
from accounts.selectors import api_keys_for_customer
from metering.selectors import UsageSummary, usage_summary
from plans.models import Product


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    status: str  # active | expiring | expired | revoked
    expires_at: datetime | None


def key_row(key: ApiKey, now: datetime) -> KeyRow:
    if key.revoked_at is not None:
        return KeyRow(key=key, status="revoked", expires_at=None)
    if key.expires_at is None:
        return KeyRow(key=key, status="active", expires_at=None)
    # A rotated key's grace period ends at expires_at; the nightly task then stamps revoked_at.
    return KeyRow(key=key, status="expiring" if key.expires_at > now else "expired", expires_at=key.expires_at)


def key_rows(*, customer: Customer) -> list[KeyRow]:
    now = timezone.now()
    return [key_row(key, now) for key in api_keys_for_customer(customer=customer)]


@dataclass(frozen=True)
class PeriodUsage:
    summary: UsageSummary
    included: int

    @property
    def remaining(self) -> int:
        return max(self.included - self.summary.calls, 0)

    @property
    def products(self) -> list[tuple[str, int]]:
        """(display name, calls) per product, busiest first."""
        labels = dict(Product.choices)
        rows = [(labels.get(slug, slug), calls) for slug, calls in self.summary.by_product.items()]
        return sorted(rows, key=lambda row: -row[1])

    @property
    def percent_used(self) -> int:
        if not self.included:
            return 0
        return min(round(self.summary.calls * 100 / self.included), 100)


def usage_this_period(*, customer: Customer) -> PeriodUsage | None:
    """This month's calls against the plan's included calls; None if Redis cannot be reached."""
    try:
        summary = usage_summary(customer_id=customer.pk, day=timezone.now().date())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return None
    return PeriodUsage(summary=summary, included=customer.plan.included_calls)
