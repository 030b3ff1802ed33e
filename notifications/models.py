"""What customers are told, and how: alert settings, spend caps, webhooks and their deliveries."""
from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Customer

MONEY = dict(max_digits=12, decimal_places=2)
DEFAULT_THRESHOLDS = [80, 100]


def _default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


def event_id_new() -> str:
    return f"evt_{secrets.token_hex(12)}"


class NotificationSettings(models.Model):
    """A customer's alert thresholds and spend cap. Customers without a row get the defaults."""

    class CapMode(models.TextChoices):
        ALERT = "alert", "Alert only"
        STOP = "stop", "Hard stop"

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="notification_settings")
    alerts_enabled = models.BooleanField(default=True)
    # Percentages of the plan's included calls, ascending.
    thresholds = models.JSONField(default=_default_thresholds)
    spend_cap = models.DecimalField(**MONEY, null=True, blank=True, help_text="Dollars per month; empty: no cap")
    cap_mode = models.CharField(max_length=5, choices=CapMode.choices, default=CapMode.ALERT)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "notification settings"

    def __str__(self) -> str:
        return f"Notification settings of {self.customer}"


class WebhookEndpoint(models.Model):
    """Where a customer's events go, and the secret that signs them.

    The secret is stored as is because we must sign with it; it is kept out of __str__, admin
    lists and logs. After a roll the previous secret keeps signing until `previous_expires_at`.
    """

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="webhook_endpoint")
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_expires_at = models.DateTimeField(null=True, blank=True)
    # The event types the customer subscribed to; empty: every type, including ones added later.
    event_types = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Webhook of {self.customer}: {self.url}"

    def receives(self, event_type: str) -> bool:
        # The test event is what the customer asks for by pressing the button: it always goes.
        return not self.event_types or event_type in self.event_types or event_type == WebhookEvent.Type.TEST

    def __repr__(self) -> str:
        return f"<WebhookEndpoint {self.pk} customer={self.customer_id}>"

    @property
    def secret_hint(self) -> str:
        return f"{self.secret[:6]}…{self.secret[-4:]}"

    def signing_secrets(self, now=None) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and a rolled one still in grace."""
        now = now or timezone.now()
        keep_old = self.previous_secret and self.previous_expires_at and self.previous_expires_at > now
        return [self.secret, self.previous_secret] if keep_old else [self.secret]


class WebhookEvent(models.Model):
    """One event for one customer's endpoint; its `event_id` lets receivers drop duplicates."""

    class Type(models.TextChoices):
        USAGE_THRESHOLD = "usage.threshold", "Usage threshold reached"
        SPEND_CAP_REACHED = "spend_cap.reached", "Spend cap reached"
        INVOICE_ISSUED = "invoice.issued", "Invoice issued"
        INVOICE_PAID = "invoice.paid", "Invoice paid"
        INVOICE_PAYMENT_FAILED = "invoice.payment_failed", "Invoice payment failed"
        KEY_ROTATED = "key.rotated", "API key rotated"
        PLAN_CHANGED = "plan.changed", "Plan changed"
        TRIAL_ENDING = "trial.ending", "Trial ending"
        TEST = "webhook.test", "Test event"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    event_id = models.CharField(max_length=40, unique=True, default=event_id_new)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(max_length=40, choices=Type.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next automatic attempt is due; a worker claims it by moving it forward.
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["customer", "-created_at"]),
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_event_due"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class WebhookDelivery(models.Model):
    """One HTTP attempt to deliver an event, successful or not."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    url = models.URLField(max_length=2000)
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The first kilobyte of the answer, decoded leniently.
    response_body = models.TextField(blank=True)
    error = models.CharField(max_length=300, blank=True)
    succeeded = models.BooleanField(default=False)
    manual = models.BooleanField(default=False, help_text="A resend asked for in the portal")
    # What was sent, as the receiver got it: [name, value] pairs in order (the signature header
    # included; it proves nothing without the secret) and the JSON body.
    request_headers = models.JSONField(default=list, blank=True)
    request_body = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_id} at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.response_status or self.error}"


class UsageAlert(models.Model):
    """An alert that fired; the unique constraint makes each one fire once per period."""

    class Kind(models.TextChoices):
        USAGE = "usage", "Usage threshold"
        SPEND_CAP = "spend_cap", "Spend cap"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="usage_alerts")
    period = models.CharField(max_length=7, help_text="YYYY-MM, UTC")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # A percentage of included calls for usage alerts; the cap in cents for spend-cap alerts,
    # so raising the cap arms a new alert.
    threshold = models.PositiveBigIntegerField()
    month_calls = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "period", "kind", "threshold"], name="one_alert_per_threshold"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.period} {self.kind} {self.threshold}"
