"""Writes: alert settings and spend caps, webhook endpoints and secrets, events, deliveries, alerts."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import outbox
from accounts.models import Customer
from billing.selectors import usage_live
from core.money import CENT
from metering.services import usage_limits_set

from .limits import endpoint_delivery_wait, manual_send_count
from .models import NotificationSettings, UsageAlert, WebhookDelivery, WebhookEndpoint, WebhookEvent
from .outbound import PostResult, request_headers, webhook_post
from .selectors import AlertPoint, UsageLimitsPlan, alert_points_at, usage_limits_plan
from .signing import HEADER, signature_header
from .tasks import usage_alert_email_send, webhook_event_deliver, webhook_event_resend as webhook_event_resend_task
from .validation import event_types_validate, settings_validate, webhook_url_validate

# A rolled secret keeps signing this long, so receivers can switch without dropping events.
SECRET_GRACE = timedelta(hours=24)
# How long a worker owns an event it is delivering (longer than the task's hard time limit).
CLAIM_SECONDS = 60
# What an attempt says until it has an outcome; a worker killed meanwhile leaves it so, and the
# attempt counts as failed towards the backoff and the give-up.
UNFINISHED = "No outcome recorded: the attempt was in progress or its worker was stopped"
WORKER_TIME_LIMIT = "Stopped by the worker's time limit before the receiver answered"
RETRY_WINDOW = timedelta(days=3)
EVENT_RETENTION = timedelta(days=30)
RETRY_FIRST_SECONDS, RETRY_FACTOR, RETRY_MAX_SECONDS = 60, 4, 12 * 3600


def retry_delays() -> tuple[int, ...]:
    """Seconds to wait after each failed attempt: x4 from a minute, at most 12 h, within 3 days."""
    delays, total, delay = [], 0, RETRY_FIRST_SECONDS
    while total + delay <= RETRY_WINDOW.total_seconds():
        delays.append(delay)
        total += delay
        delay = min(delay * RETRY_FACTOR, RETRY_MAX_SECONDS)
    return tuple(delays)


RETRY_DELAYS = retry_delays()


# Settings and spend cap ---------------------------------------------------------------------

@transaction.atomic
def notification_settings_update(
    *, customer: Customer, alerts_enabled: bool, thresholds: list[int], spend_cap: Decimal | None, cap_mode: str,
) -> NotificationSettings:
    thresholds = settings_validate(plan=customer.terms, thresholds=thresholds, spend_cap=spend_cap, cap_mode=cap_mode)
    if spend_cap is not None and cap_mode == NotificationSettings.CapMode.STOP:
        # A hard stop below what the month already owes would bound the invoice and forgive the rest.
        owed = usage_live(customer=customer).rating.charges
        if spend_cap < owed:
            raise ValidationError({"spend_cap": f"This month already comes to ${owed:,}; a hard stop must be at least that."})
    row, _ = NotificationSettings.objects.update_or_create(
        customer=customer,
        defaults={"alerts_enabled": alerts_enabled, "thresholds": thresholds, "spend_cap": spend_cap,
                  "cap_mode": cap_mode, "updated_at": timezone.now()},
    )
    usage_limits_sync(customer_id=customer.pk)
    return row


def usage_limits_sync(*, customer_id: int) -> UsageLimitsPlan:
    """Hand the meter this customer's alert points and hard-stop ceiling, in calls."""
    customer = Customer.objects.select_related("plan").get(pk=customer_id)
    limits = usage_limits_plan(customer=customer)
    usage_limits_set(customer_id=customer_id, alert_at_calls=limits.alert_at_calls, call_ceiling=limits.call_ceiling,
                     spend_cap=limits.spend_cap)
    return limits


# Webhook endpoint and secret ----------------------------------------------------------------

@dataclass(frozen=True)
class EndpointSaved:
    endpoint: WebhookEndpoint
    created: bool


def webhook_secret_new() -> str:
    return f"whsec_{secrets.token_hex(24)}"


@transaction.atomic
def webhook_endpoint_set(*, customer: Customer, url: str, event_types: list[str] | None = None) -> EndpointSaved:
    """Create or change the endpoint; `event_types` None keeps the subscription, [] means every type."""
    url = webhook_url_validate(url)
    types = None if event_types is None else event_types_validate(event_types)
    endpoint = WebhookEndpoint.objects.select_for_update().filter(customer=customer).first()
    if endpoint is None:
        endpoint = WebhookEndpoint.objects.create(customer=customer, url=url, secret=webhook_secret_new(),
                                                  event_types=types or [])
        return EndpointSaved(endpoint=endpoint, created=True)
    endpoint.url, endpoint.updated_at = url, timezone.now()
    if types is not None:
        endpoint.event_types = types
    endpoint.save(update_fields=["url", "event_types", "updated_at"])
    return EndpointSaved(endpoint=endpoint, created=False)


@transaction.atomic
def webhook_secret_roll(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret; the current one keeps signing for SECRET_GRACE (an older rolled one stops now)."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    now = timezone.now()
    endpoint.previous_secret, endpoint.previous_expires_at = endpoint.secret, now + SECRET_GRACE
    endpoint.secret, endpoint.updated_at = webhook_secret_new(), now
    endpoint.save(update_fields=["secret", "previous_secret", "previous_expires_at", "updated_at"])
    return endpoint


def webhook_endpoint_delete(*, customer: Customer) -> bool:
    deleted, _ = WebhookEndpoint.objects.filter(customer=customer).delete()
    return deleted > 0


# Events and deliveries ----------------------------------------------------------------------

@transaction.atomic
def webhook_event_create(*, customer_id: int, type: str, data: dict[str, Any]) -> WebhookEvent | None:
    """Record an event for the customer's endpoint and deliver it; None when no endpoint is set
    or the endpoint is not subscribed to this type."""
    endpoint = WebhookEndpoint.objects.filter(customer_id=customer_id).only("event_types").first()
    if endpoint is None or not endpoint.receives(type):
        return None
    event = WebhookEvent.objects.create(customer_id=customer_id, type=type, data=data)

    outbox.enqueue(webhook_event_deliver, event_id=event.pk)
    return event


def webhook_test_send(*, customer: Customer) -> WebhookEvent | None:
    """Raises limits.SendLimited past the customer's budget of manual sends."""
    manual_send_count(customer_id=customer.pk)
    data = {"message": "A test event from your Tollbooth settings page.", "customer": customer.company}
    return webhook_event_create(customer_id=customer.pk, type=WebhookEvent.Type.TEST, data=data)


@transaction.atomic
def webhook_event_resend(*, event: WebhookEvent) -> None:
    """Raises limits.SendLimited past the customer's budget of manual sends."""
    manual_send_count(customer_id=event.customer_id)

    outbox.enqueue(webhook_event_resend_task, event_id=event.pk)


def webhook_event_body(event: WebhookEvent) -> bytes:
    payload = {"id": event.event_id, "type": event.type, "created": int(event.created_at.timestamp()), "data": event.data}
    return json.dumps(payload, separators=(",", ":")).encode()


def webhook_event_attempt(*, event_id: int, manual: bool = False) -> WebhookDelivery | None:
    """POST the event once and log it. Automatic attempts first claim the event, so only one runs."""
    if not manual and not _event_claim(event_id):
        return None
    event = WebhookEvent.objects.get(pk=event_id)
    endpoint = WebhookEndpoint.objects.filter(customer_id=event.customer_id).first()
    if endpoint is None:
        _event_settle(event, ok=False, manual=manual, now=timezone.now(), give_up=True)
        return None
    wait = endpoint_delivery_wait(endpoint_id=endpoint.pk)
    if wait:
        _event_postpone(event, seconds=wait)
        return None
    body, now = webhook_event_body(event), timezone.now()
    signature = signature_header(secrets=endpoint.signing_secrets(now), timestamp=int(now.timestamp()), body=body)
    headers = {"Content-Type": "application/json", HEADER: signature}
    # Written before the POST, so an attempt whose worker dies still counts as a failed one.
    delivery = WebhookDelivery.objects.create(
        event=event, url=endpoint.url, started_at=now, manual=manual, error=UNFINISHED,
        request_headers=request_headers(url=endpoint.url, headers=headers), request_body=body.decode(),
    )
    try:
        result = webhook_post(url=endpoint.url, body=body, headers=headers)
    except SoftTimeLimitExceeded:
        # Recorded like any failure, so the backoff and the give-up apply instead of a retry
        # every time the claim runs out.
        result = PostResult(None, "", WORKER_TIME_LIMIT, int((timezone.now() - now).total_seconds() * 1000))
    delivery.duration_ms, delivery.response_status, delivery.response_body = result.duration_ms, result.status, result.body
    delivery.error, delivery.succeeded = result.error, result.ok
    delivery.save(update_fields=["duration_ms", "response_status", "response_body", "error", "succeeded"])
    _event_settle(event, ok=result.ok, manual=manual, now=now)
    return delivery


def webhook_events_prune(*, older_than: timedelta = EVENT_RETENTION) -> int:
    """Forget settled events (and their attempts) older than the delivery log shows."""
    settled = WebhookEvent.objects.exclude(status=WebhookEvent.Status.PENDING)
    deleted, _ = settled.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted


def webhook_events_due(*, limit: int = 500) -> list[int]:
    due = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING, next_attempt_at__lte=timezone.now())
    return list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])


def _event_claim(event_id: int) -> bool:
    now = timezone.now()
    claimed = WebhookEvent.objects.filter(
        pk=event_id, status=WebhookEvent.Status.PENDING, next_attempt_at__lte=now,
    ).update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
    return claimed == 1


def _event_postpone(event: WebhookEvent, *, seconds: int) -> None:
    """The endpoint had its minute's deliveries: try again when the next minute starts, without
    counting a failure. A postponed resend joins the automatic attempts."""
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=WebhookEvent.Status.PENDING, next_attempt_at=timezone.now() + timedelta(seconds=seconds),
    )


def _event_settle(event: WebhookEvent, *, ok: bool, manual: bool, now: datetime, give_up: bool = False) -> None:
    # The backoff counts from when the attempt started, however long the receiver took.
    event.attempts += 1
    if ok:
        event.status, event.delivered_at, event.next_attempt_at = WebhookEvent.Status.DELIVERED, now, None
    elif not manual:
        failures = event.deliveries.filter(manual=False, succeeded=False).count()
        delay = None if give_up or failures > len(RETRY_DELAYS) else RETRY_DELAYS[failures - 1]
        if delay is None:
            event.status, event.next_attempt_at = WebhookEvent.Status.FAILED, None
        else:
            event.next_attempt_at = now + timedelta(seconds=delay)
    event.save(update_fields=["attempts", "status", "delivered_at", "next_attempt_at"])


# Usage alerts -------------------------------------------------------------------------------

def usage_alert_fire(*, customer_id: int, period: str, threshold_calls: int, month_calls: int) -> list[UsageAlert]:
    """The alerts the meter's crossing stands for, each recorded (and sent) once per period."""
    customer = Customer.objects.select_related("plan").get(pk=customer_id)
    fired = []
    for point in alert_points_at(customer=customer, calls=threshold_calls):
        alert = _alert_record(customer, period, point, month_calls)
        if alert is not None:
            fired.append(alert)
    return fired


@transaction.atomic
def _alert_record(customer: Customer, period: str, point: AlertPoint, month_calls: int) -> UsageAlert | None:
    # The unique constraint decides under concurrency: a second insert finds the first one.
    alert, created = UsageAlert.objects.get_or_create(
        customer=customer, period=period, kind=point.kind, threshold=point.threshold,
        defaults={"month_calls": month_calls},
    )
    if not created:
        return None

    outbox.enqueue(usage_alert_email_send, alert_id=alert.pk)
    webhook_event_create(customer_id=customer.pk, type=_alert_event_type(point), data=_alert_event_data(customer, alert, point))
    return alert


def _alert_event_type(point: AlertPoint) -> str:
    if point.kind == UsageAlert.Kind.SPEND_CAP:
        return WebhookEvent.Type.SPEND_CAP_REACHED
    return WebhookEvent.Type.USAGE_THRESHOLD


def _alert_event_data(customer: Customer, alert: UsageAlert, point: AlertPoint) -> dict[str, Any]:
    data = {"period": alert.period, "month_calls": alert.month_calls, "threshold_calls": point.calls,
            "included_calls": customer.plan.included_calls, "plan": customer.plan.slug}
    if point.kind == UsageAlert.Kind.SPEND_CAP:
        chosen = NotificationSettings.objects.filter(customer=customer).first()
        hard_stop = chosen is not None and chosen.cap_mode == NotificationSettings.CapMode.STOP
        return {**data, "spend_cap": str((Decimal(point.threshold) / 100).quantize(CENT)), "hard_stop": hard_stop}
    return {**data, "threshold_percent": point.threshold}
