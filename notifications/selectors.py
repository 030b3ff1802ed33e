"""Reads: a customer's alert settings, what they mean in calls, and the webhook delivery log."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from django.utils import timezone

from accounts.models import Customer
from billing.calculations import period_of
from billing.selectors import invoice_compute
from plans.models import Plan

from .models import DEFAULT_THRESHOLDS, NotificationSettings, UsageAlert, WebhookDelivery, WebhookEndpoint, WebhookEvent

CENT = Decimal("0.01")
HALF_CENT = Decimal("0.005")


@dataclass(frozen=True)
class AlertSettings:
    alerts_enabled: bool
    thresholds: tuple[int, ...]
    spend_cap: Decimal | None
    cap_mode: str

    @property
    def hard_stop(self) -> bool:
        return self.spend_cap is not None and self.cap_mode == NotificationSettings.CapMode.STOP


@dataclass(frozen=True)
class AlertPoint:
    """An alert as the meter sees it: fire when the month's calls reach `calls`."""

    kind: str
    threshold: int  # percent for usage alerts, cap in cents for the spend cap
    calls: int


@dataclass(frozen=True)
class UsageLimitsPlan:
    points: tuple[AlertPoint, ...]
    call_ceiling: int | None

    @property
    def alert_at_calls(self) -> list[int]:
        return sorted({point.calls for point in self.points})


def alert_settings_get(*, customer: Customer) -> AlertSettings:
    row = NotificationSettings.objects.filter(customer=customer).first()
    if row is None:
        return AlertSettings(True, tuple(DEFAULT_THRESHOLDS), None, NotificationSettings.CapMode.ALERT)
    return AlertSettings(row.alerts_enabled, tuple(row.thresholds), row.spend_cap, row.cap_mode)


def spend_cap_calls(*, plan: Plan, fixed: Decimal, cap: Decimal) -> int | None:
    """The most calls in a period whose invoice stays within `cap`; None if usage never adds cost.

    `fixed` is the period's invoice without overage (prorated base fees, trial days free); the
    overage line is (calls - included) x overage price of the plan held at period end, rounded
    half-up to cents (DESIGN §6). A cap below the fixed part (left from a cheaper plan) stops at
    the included calls: the base fee is owed anyway, the overage is not.
    """
    if plan.hard_cap or plan.overage_price <= 0:
        return None
    remaining = cap - fixed
    if remaining < 0:
        return plan.included_calls
    # round_half_up(n * p) <= remaining  <=>  n * p < remaining + half a cent
    limit = ((remaining + HALF_CENT) / plan.overage_price).to_integral_value(rounding=ROUND_CEILING)
    return plan.included_calls + int(limit) - 1


def spend_cap_calls_for(*, customer: Customer, cap: Decimal, period: str | None = None) -> int | None:
    """The customer's cap in metered calls this period, from the invoice computation itself.

    The meter counts trial-day calls too, which are never billed, so the bill at the ceiling is
    at most the cap.
    """
    period = period or period_of(timezone.now())
    fixed = invoice_compute(customer=customer, period=period, calls=customer.plan.included_calls).total
    return spend_cap_calls(plan=customer.plan, fixed=fixed, cap=cap)


def threshold_calls(*, plan: Plan, percent: int) -> int:
    return int((Decimal(plan.included_calls) * percent / 100).to_integral_value(rounding=ROUND_CEILING))


def usage_limits_plan(*, customer: Customer) -> UsageLimitsPlan:
    """What the meter must watch for this customer: alert points and the hard-stop ceiling."""
    plan, chosen = customer.plan, alert_settings_get(customer=customer)
    points = []
    if chosen.alerts_enabled and plan.included_calls > 0:
        points += [AlertPoint(UsageAlert.Kind.USAGE, p, threshold_calls(plan=plan, percent=p)) for p in chosen.thresholds]
    cap_calls = spend_cap_calls_for(customer=customer, cap=chosen.spend_cap) if chosen.spend_cap is not None and plan.is_paid else None
    if cap_calls is not None:
        points.append(AlertPoint(UsageAlert.Kind.SPEND_CAP, int(chosen.spend_cap * 100), cap_calls))
    points = [point for point in points if point.calls > 0]
    ceiling = cap_calls if chosen.hard_stop and cap_calls is not None else None
    return UsageLimitsPlan(points=tuple(points), call_ceiling=ceiling)


def alert_points_at(*, customer: Customer, calls: int) -> list[AlertPoint]:
    return [point for point in usage_limits_plan(customer=customer).points if point.calls == calls]


def webhook_endpoint_get(*, customer: Customer) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(customer=customer).first()


def webhook_event_for_customer(*, customer: Customer, event_pk: int) -> WebhookEvent | None:
    return WebhookEvent.objects.filter(customer=customer, pk=event_pk).first()


@dataclass(frozen=True)
class DeliveryLogRow:
    event: WebhookEvent
    attempts: tuple[WebhookDelivery, ...]  # newest first

    @property
    def latest(self) -> WebhookDelivery | None:
        return self.attempts[0] if self.attempts else None


def webhook_delivery_log(*, customer: Customer, limit: int = 50) -> list[DeliveryLogRow]:
    """The latest events with every attempt, newest first (one query for events, one for attempts)."""
    events = WebhookEvent.objects.filter(customer=customer).order_by("-created_at", "-pk")[:limit]
    return [DeliveryLogRow(event, tuple(event.deliveries.all())) for event in events.prefetch_related("deliveries")]
