"""What notifications shows staff on one customer's page (README "Staff console"): the alerts
that fired, the webhook events with their last delivery, and both as entries of the customer's
timeline.

The staff page belongs to `dashboard`, a sibling of this app: neither imports the other. The page
composes this app's part through the template tags in `notifications.templatetags.customer_record`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch

from accounts.models import Customer

from .models import UsageAlert, WebhookDelivery, WebhookEvent

LISTED = 24
TIMELINE_LENGTH = 100


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the staff timeline; the same fields as every other app's lines there."""

    at: datetime
    kind: str  # a CSS-friendly word
    text: str
    by: str = ""
    note: str = ""


def customer_alerts(*, customer: Customer, limit: int = LISTED) -> list[UsageAlert]:
    return list(UsageAlert.objects.filter(customer=customer)[:limit])


def customer_webhook_events(*, customer: Customer, limit: int = LISTED) -> list[WebhookEvent]:
    """Newest first, each with its deliveries newest first (the page shows the last one)."""
    deliveries = Prefetch("deliveries", queryset=WebhookDelivery.objects.order_by("-started_at", "-pk"))
    return list(WebhookEvent.objects.filter(customer=customer).prefetch_related(deliveries)[:limit])


def customer_timeline_entries(*, customer: Customer, limit: int = TIMELINE_LENGTH) -> list[TimelineEntry]:
    """The alerts that fired, newest first: the page merges them into its timeline."""
    return [TimelineEntry(a.created_at, "alert", f"{a.get_kind_display()} alert, {a.period}")
            for a in UsageAlert.objects.filter(customer=customer)[:limit]]
