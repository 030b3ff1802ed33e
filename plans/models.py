from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class Product(models.TextChoices):
    """The API products a plan can be entitled to; each /v1 endpoint belongs to one."""

    GEOCODE = "geocode", "Geocoding"
    TEXT = "text", "Text analysis"
    IMAGE = "image", "Image analysis"


class Plan(models.Model):
    class Interval(models.TextChoices):
        MONTH = "month", "Monthly"

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=60)
    description = models.CharField(max_length=200, blank=True)
    price = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    interval = models.CharField(max_length=10, choices=Interval.choices, default=Interval.MONTH)
    included_calls = models.PositiveBigIntegerField()
    overage_price = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Per call beyond the included calls. Ignored when the plan has a hard cap.",
    )
    hard_cap = models.BooleanField(
        default=False, help_text="Refuse calls past the included calls instead of billing overage."
    )
    rate_per_minute = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    trial_days = models.PositiveIntegerField(default=0)
    features = models.JSONField(default=list, blank=True, help_text="Display lines for the pricing table.")
    entitlements = models.JSONField(
        default=list, help_text=f"API products this plan may call: {', '.join(Product.values)}."
    )
    is_public = models.BooleanField(default=True, help_text="Shown on the pricing page and open to signup.")
    is_default = models.BooleanField(
        default=False,
        help_text="The plan customers fall back to (ended trials, past-due grace). Exactly one.",
    )
    sort_order = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sort_order", "price"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_plan"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_paid(self) -> bool:
        return self.price > 0

    @property
    def has_trial(self) -> bool:
        return self.trial_days > 0

    def allows(self, product: str) -> bool:
        return product in self.entitlements


class Terms(models.Model):
    """What a customer agreed to pay and may use: a plan's values at the moment the customer took them.

    Rows never change. Signup and every plan change point at one; invoices, previews, the portal,
    MRR and the API's limits read these, never the live Plan row, so staff editing a plan reprices
    only new signups and changes (DESIGN §6, "Terms are a snapshot").
    """

    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="terms")
    name = models.CharField(max_length=60)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    included_calls = models.PositiveBigIntegerField()
    overage_price = models.DecimalField(max_digits=12, decimal_places=6)
    hard_cap = models.BooleanField()
    rate_per_minute = models.PositiveIntegerField()
    entitlements = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["plan", "-pk"]
        verbose_name, verbose_name_plural = "set of terms", "sets of terms"

    VALUE_FIELDS = ("name", "price", "included_calls", "overage_price", "hard_cap", "rate_per_minute", "entitlements")

    def __str__(self) -> str:
        return f"{self.name} (${self.price}/month, {self.included_calls:,} calls, terms #{self.pk})"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("Terms never change: take new terms instead.")
        super().save(*args, **kwargs)

    @property
    def is_paid(self) -> bool:
        return self.price > 0

    def allows(self, product: str) -> bool:
        return product in self.entitlements

    def values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.VALUE_FIELDS)
