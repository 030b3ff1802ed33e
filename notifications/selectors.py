"""Reads: a customer's alert settings, what they mean in calls, and the webhook delivery log."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from django.db.models import Q
from django.utils import timezone

from accounts.models import Customer
from billing.rating import Run
from billing.selectors import LiveUsage, usage_live
from core.money import HALF_CENT
from core.periods import day_start

from .models import DEFAULT_THRESHOLDS, NotificationSettings, UsageAlert, WebhookDelivery, WebhookEndpoint, WebhookEvent



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
    spend_cap: Decimal | None = None  # the hard stop in dollars, for billing to bound the invoice

    @property
    def alert_at_calls(self) -> list[int]:
        return sorted({point.calls for point in self.points})


def alert_settings_get(*, customer: Customer) -> AlertSettings:
    row = NotificationSettings.objects.filter(customer=customer).first()
    if row is None:
        return AlertSettings(True, tuple(DEFAULT_THRESHOLDS), None, NotificationSettings.CapMode.ALERT)
    return AlertSettings(row.alerts_enabled, tuple(row.thresholds), row.spend_cap, row.cap_mode)


def spend_cap_calls(*, run: Run, owed_elsewhere: Decimal, cap: Decimal) -> int | None:
    """The most calls the current run may make while the period's invoice stays within `cap`;
    None when its calls never add cost (hard-capped terms or no overage price).

    `owed_elsewhere` is everything the period owes but this run's overage: every run's base fee
    (today's terms through the period's end) and the other runs' overage. The run's overage is
    (calls − allowance) × its overage price, rounded half-up to cents (README "Billing"), so n calls past
    the allowance fit while round_half_up(n × price) ≤ cap − owed_elsewhere. A cap already below
    what is owed stops the run at its allowance: the base fee is owed anyway, the overage is not.
    """
    terms = run.terms
    if terms.hard_cap or terms.overage_price <= 0:
        return None
    remaining = cap - owed_elsewhere
    if remaining < 0:
        return run.allowance
    # round_half_up(n * p) <= remaining  <=>  n * p < remaining + half a cent
    limit = ((remaining + HALF_CENT) / terms.overage_price).to_integral_value(rounding=ROUND_CEILING)
    return run.allowance + int(limit) - 1


def threshold_calls(*, allowance: int, percent: int) -> int:
    return int((Decimal(allowance) * percent / 100).to_integral_value(rounding=ROUND_CEILING))


def usage_limits_plan(*, customer: Customer, live: LiveUsage | None = None) -> UsageLimitsPlan:
    """What the meter must watch for this customer, as month call counts: the usage alerts (a
    percentage of the current run's allowance) and the hard-stop ceiling, from the invoice's own
    rating of the period so far.

    The meter counts every call of the month; calls on days outside the current run (earlier runs,
    trial days) are already in that count and stay there, so each point is that count plus the
    current run's calls at which the point is reached. During a trial calls are free: nothing to
    watch until the trial ends (its end resyncs the limits).
    """
    chosen = alert_settings_get(customer=customer)
    live = live or usage_live(customer=customer)
    run = live.current
    if run is None:
        return UsageLimitsPlan(points=(), call_ceiling=None, spend_cap=chosen.spend_cap if chosen.hard_stop else None)
    outside = live.month_calls - run.calls
    points = []
    if chosen.alerts_enabled and run.allowance > 0:
        points += [AlertPoint(UsageAlert.Kind.USAGE, p, outside + threshold_calls(allowance=run.allowance, percent=p))
                   for p in chosen.thresholds]
    cap_calls = None
    if chosen.spend_cap is not None and run.terms.is_paid:
        in_run = spend_cap_calls(run=run, owed_elsewhere=live.rating.charges - run.overage, cap=chosen.spend_cap)
        cap_calls = None if in_run is None else outside + in_run
    if cap_calls is not None:
        points.append(AlertPoint(UsageAlert.Kind.SPEND_CAP, int(chosen.spend_cap * 100), cap_calls))
    points = [point for point in points if point.calls > 0]
    ceiling = cap_calls if chosen.hard_stop and cap_calls is not None else None
    return UsageLimitsPlan(points=tuple(points), call_ceiling=ceiling,
                           spend_cap=chosen.spend_cap if chosen.hard_stop else None)


def usage_limits_due(*, now: datetime | None = None) -> list[int]:
    """Customers whose run changed at the start of today (UTC): after a plan change or a trial's
    end yesterday, and everyone not cancelled on the first day of a period."""
    now = now or timezone.now()
    today = day_start(now.date())
    customers = Customer.objects.exclude(status=Customer.Status.CANCELLED)
    if now.day == 1:
        return list(customers.order_by("pk").values_list("pk", flat=True))
    yesterday = today - timedelta(days=1)
    changed = Q(plan_changes__at__gte=yesterday, plan_changes__at__lt=today)
    trial_over = Q(trial_ends_at__gte=yesterday, trial_ends_at__lt=today)
    return list(customers.filter(changed | trial_over).distinct().order_by("pk").values_list("pk", flat=True))


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
