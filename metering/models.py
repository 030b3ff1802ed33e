from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.models import ApiKey, Customer


class UsageRecord(models.Model):
    """Billable calls per customer, key, product and UTC day: the source of truth for money."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="usage_records")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records")
    product = models.CharField(max_length=40)  # a plans.Product slug
    day = models.DateField()
    calls = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "api_key", "product", "day"], name="one_usage_row", nulls_distinct=False
            ),
        ]
        # (day) serves the staff dashboard's "yesterday and today, all customers" read.
        indexes = [models.Index(fields=["customer", "day"]), models.Index(fields=["day"], name="usage_day")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.day} {self.product}: {self.calls}"


class UsageFlush(models.Model):
    """One applied batch of Redis counters. Its unique id makes a retried flush a no-op."""

    flush_id = models.CharField(max_length=40, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="usage_flushes")
    calls = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "usage flushes"
        indexes = [models.Index(fields=["created_at"])]


class UsageLimits(models.Model):
    """A customer's own limits on its usage: where alerts fire and where calls stop (spend cap).

    Read once into the cached key config, so the meter script enforces them without SQL."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="usage_limits")
    alert_at_calls = models.JSONField(default=list, blank=True)
    call_ceiling = models.PositiveBigIntegerField(null=True, blank=True)
    # The hard-stop spend cap in dollars (empty: none). Kept here, below billing, so the invoice
    # and plan changes can honour it (README "Billing"); notifications owns the setting and syncs it.
    spend_cap = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "usage limits"

    def __str__(self) -> str:
        return f"{self.customer_id}: alerts {self.alert_at_calls}, ceiling {self.call_ceiling}"


class SpendCapChange(models.Model):
    """When a customer's hard-stop spend cap took each value (None: no hard stop).

    A period's invoice is bounded by the cap in force at the period's end, never by one set
    later: lowering the cap at 00:10 on the 1st must not shrink the month just closed.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="spend_cap_changes")
    spend_cap = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["customer", "at"])]
