from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class BuiltinProduct(models.TextChoices):
    """The API products Tollbooth serves in-process; each is also a builtin `Product` row."""

    GEOCODE = "geocode", "Geocoding"
    TEXT = "text", "Text analysis"
    IMAGE = "image", "Image analysis"


# Where the built-in products list (upstream products list after them).
BUILTIN_SORT_ORDER = {BuiltinProduct.GEOCODE: 10, BuiltinProduct.TEXT: 20, BuiltinProduct.IMAGE: 30}

# /v1/<segment>/ names the API itself uses: no product may take them.
RESERVED_SLUGS = frozenset({"usage", "verify", "calls", "schema", "docs"})
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def validate_methods(value: str) -> None:
    methods = [m.strip().upper() for m in value.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(HTTP_METHODS))
    if not methods:
        raise ValidationError("List at least one HTTP method, e.g. GET,POST.", code="methods")
    if unknown:
        raise ValidationError(f"Unknown HTTP method(s): {', '.join(unknown)}. Allowed: {', '.join(HTTP_METHODS)}.",
                              code="methods")


class ProductQuerySet(models.QuerySet):
    def builtin_ensure(self, slugs) -> list[Product]:
        """The products with these slugs, the built-in ones made if missing (the migration makes
        them; a flushed test database, or a script on a fresh one, needs them again)."""
        found = {product.slug: product for product in self.filter(slug__in=slugs)}
        for value, label in BuiltinProduct.choices:
            if value in slugs and value not in found:
                found[value] = self.get_or_create(slug=value, defaults=dict(
                    name=label, kind=Product.Kind.BUILTIN, sort_order=BUILTIN_SORT_ORDER[value]))[0]
        return list(found.values())


class Product(models.Model):
    """An API a plan can be entitled to: the /v1/<slug>/ segment, served in-process (builtin) or
    forwarded to the company's own service (upstream, README "Sell your own API")."""

    class Kind(models.TextChoices):
        BUILTIN = "builtin", "Built in (served by Tollbooth)"
        UPSTREAM = "upstream", "Your service (forwarded)"

    slug = models.SlugField(max_length=40, unique=True, help_text="The /v1/<slug>/ segment of its URLs.")
    name = models.CharField(max_length=60)
    description = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.UPSTREAM)
    upstream_url = models.URLField(
        max_length=500, blank=True, validators=[URLValidator(schemes=["http", "https"])],
        help_text="Base URL calls are forwarded to, e.g. http://10.0.0.5:8080/api.",
    )
    methods = models.CharField(max_length=100, default="GET,POST", validators=[validate_methods],
                               help_text="Allowed HTTP methods, comma separated.")
    timeout_seconds = models.PositiveIntegerField(
        # At most 100 s: a call still open after METERING_CALL_MAX_SECONDS (120 s) is released
        # unbilled as if its worker had died, so a slower answer could never be billed.
        default=30, validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="A call the upstream has not answered by then ends in 504 upstream_timeout (1 to 100).",
    )
    body_limit_bytes = models.PositiveIntegerField(
        default=10 * 1024 * 1024, help_text="Largest request body forwarded; larger ones get 413."
    )
    health_path = models.CharField(max_length=200, default="/", help_text="“Check upstream” GETs the base URL + this.")
    active = models.BooleanField(default=True, help_text="Untick to stop serving it without deleting it.")
    # Stored in the clear: Tollbooth signs every forwarded request with it.
    signing_secret = models.CharField(max_length=100, blank=True)
    # sha256 hex of the service token (verify API); the raw token is shown once.
    service_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    service_token_last4 = models.CharField(max_length=8, blank=True)
    sort_order = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_upstream(self) -> bool:
        return self.kind == self.Kind.UPSTREAM

    def allowed_methods(self) -> set[str]:
        return {m.strip().upper() for m in self.methods.split(",") if m.strip()}

    def clean(self) -> None:
        errors = {}
        if self.slug in RESERVED_SLUGS:
            errors["slug"] = ValidationError(f"“{self.slug}” is reserved by the API itself; choose another.",
                                             code="reserved")
        elif self.slug in BuiltinProduct.values and self.kind != self.Kind.BUILTIN:
            errors["slug"] = ValidationError(f"“{self.slug}” belongs to a built-in product; choose another.",
                                             code="reserved")
        if self.kind == self.Kind.UPSTREAM and not self.upstream_url:
            errors["upstream_url"] = ValidationError("An upstream product needs the URL to forward to.",
                                                     code="required")
        if self.kind == self.Kind.BUILTIN and self.slug and self.slug not in BuiltinProduct.values:
            errors["kind"] = ValidationError("Only the products Tollbooth ships are built in.", code="builtin")
        if errors:
            raise ValidationError(errors)


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
    products = models.ManyToManyField(Product, related_name="plans", blank=True,
                                      help_text="API products this plan may call.")
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

    @property
    def entitlements(self) -> list[str]:
        """Slugs of the products this plan may call, in display order (what terms snapshot)."""
        pending = getattr(self, "_entitlements_pending", None)
        if pending is not None:
            return list(pending)
        if self.pk is None:
            return []
        return [product.slug for product in self.products.all()]

    @entitlements.setter
    def entitlements(self, slugs) -> None:
        # Plan(entitlements=[...]) and plan.entitlements = [...] keep working (seeds, tests, scripts):
        # the slugs become the plan's products when it is saved.
        self._entitlements_pending = list(slugs)

    def save(self, *args, **kwargs):
        pending = getattr(self, "_entitlements_pending", None)
        products = None if pending is None else Product.objects.builtin_ensure(pending)
        if products is not None and (unknown := sorted(set(pending) - {p.slug for p in products})):
            raise ValueError(f"No such product: {', '.join(unknown)}.")
        super().save(*args, **kwargs)
        if products is not None:
            self.products.set(products)
            self._entitlements_pending = None

    def allows(self, product: str) -> bool:
        return product in self.entitlements


class Terms(models.Model):
    """What a customer agreed to pay and may use: a plan's values at the moment the customer took them.

    Rows never change. Signup and every plan change point at one; invoices, previews, the portal,
    MRR and the API's limits read these, never the live Plan row, so staff editing a plan reprices
    only new signups and changes (README "Billing", "Terms are snapshots").
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
