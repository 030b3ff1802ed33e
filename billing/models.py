"""Billing: plan history, invoices and their lines, payments and Stripe's events (README "Billing").

Tollbooth is the system of record for invoices (as Lago is); Stripe only collects the money.
"""
from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Customer
from plans.models import Plan, Terms
from plans.services import terms_current

MONEY = dict(max_digits=12, decimal_places=2)
UNIT_PRICE = dict(max_digits=12, decimal_places=6)


class PlanChange(models.Model):
    """A customer moved from one plan to another, effective `at`. Drives proration and MRR history.

    A customer's first plan is the `from_plan` of its first change (or its current plan when it
    never changed), held since `Customer.created_at`.
    """

    class Reason(models.TextChoices):
        CUSTOMER = "customer", "Changed by the customer"
        STAFF = "staff", "Changed by staff"
        TRIAL_ENDED = "trial_ended", "Trial ended without a card"
        CANCELLED = "cancelled", "Cancelled"
        REACTIVATED = "reactivated", "Reactivated"
        TERMS_UPDATED = "terms_updated", "Moved to the plan's current terms by staff"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="plan_changes")
    from_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    to_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    # The terms this change starts (a snapshot of to_plan then); what its days are rated on.
    terms = models.ForeignKey(Terms, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=20, choices=Reason.choices, default=Reason.CUSTOMER)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["customer", "at"]), models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.from_plan_id} → {self.to_plan_id} at {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        # subscriptions.plan_change always names the terms; a cancellation keeps the customer's.
        if self.terms_id is None:
            customer_terms = self.customer.terms
            same_plan = customer_terms is not None and customer_terms.plan_id == self.to_plan_id
            self.terms = customer_terms if same_plan else terms_current(plan=self.to_plan)
        super().save(*args, **kwargs)


class InvoiceNumberCounter(models.Model):
    """One row per year; numbers are taken under a row lock at issue time, so they never repeat."""

    year = models.PositiveIntegerField(unique=True)
    last = models.PositiveIntegerField(default=0)


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        VOID = "void", "Void"
        UNCOLLECTIBLE = "uncollectible", "Uncollectible"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    period = models.CharField(max_length=7, help_text="YYYY-MM, UTC")
    # Empty while draft; e.g. TB-2026-000042, given when the invoice is issued.
    number = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.DRAFT)
    currency = models.CharField(max_length=3, default="USD")
    subtotal = models.DecimalField(**MONEY, default=Decimal("0.00"))
    total = models.DecimalField(**MONEY, default=Decimal("0.00"))
    # The plan in effect at the end of the period (its overage price billed the overage line).
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    calls = models.PositiveBigIntegerField(default=0, help_text="Billable calls in the period")
    is_final = models.BooleanField(default=False, help_text="The last invoice after a cancellation")
    created_at = models.DateTimeField(default=timezone.now)
    issued_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    # How it was paid, for the customer: "Visa ••4242", "bank transfer", "credit balance".
    paid_by = models.CharField(max_length=60, blank=True)
    next_charge_at = models.DateTimeField(null=True, blank=True, help_text="Dunning: when to retry")

    class Meta:
        ordering = ["-period", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "period"], name="one_invoice_per_period"),
            models.UniqueConstraint(fields=["number"], condition=~Q(number=""), name="unique_invoice_number"),
        ]
        indexes = [models.Index(fields=["status", "period"]), models.Index(fields=["period"])]

    def __str__(self) -> str:
        return self.number or f"draft {self.customer_id} {self.period}"

    @property
    def is_locked(self) -> bool:
        """Issued invoices never change: a correction is a credit line on the next one."""
        return self.status != self.Status.DRAFT


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        BASE = "base", "Base fee"
        OVERAGE = "overage", "Overage"
        CREDIT = "credit", "Credit"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.CharField(max_length=200)
    quantity = models.DecimalField(max_digits=16, decimal_places=4)
    unit_price = models.DecimalField(**UNIT_PRICE)
    amount = models.DecimalField(**MONEY)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    starts_on = models.DateField(null=True, blank=True)
    ends_on = models.DateField(null=True, blank=True, help_text="Exclusive")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"


class PaymentMethod(models.Model):
    """The customer's card on file at Stripe (one default per customer); never the card number."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="payment_method")
    stripe_payment_method_id = models.CharField(max_length=64)
    # Stripe's fingerprint of the card number: the same card on two accounts has the same one.
    fingerprint = models.CharField(max_length=64, blank=True, db_index=True)
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last4}"


class PaymentAttempt(models.Model):
    """One try to charge an invoice. Written before Stripe is called, so a retry finds it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    amount = models.DecimalField(**MONEY)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    stripe_payment_intent_id = models.CharField(max_length=64, blank=True)
    # What the charge was asked for, to check Stripe's events against (README "Billing").
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    currency = models.CharField(max_length=3, default="usd")
    failure_code = models.CharField(max_length=60, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["invoice", "number"]
        constraints = [models.UniqueConstraint(fields=["invoice", "number"], name="one_attempt_number")]

    def __str__(self) -> str:
        """"Attempt 2 · $59.00 · declined": how staff read a charge in the admin and the staff console."""
        if self.status == self.Status.FAILED:
            outcome = self.failure_code.removeprefix("card_").replace("_", " ") or "failed"
        else:
            outcome = self.get_status_display().lower()
        return f"Attempt {self.number} · ${self.amount:,.2f} · {outcome}"

    @property
    def idempotency_key(self) -> str:
        return f"invoice:{self.invoice_id}:charge:{self.number}"


class StripeEvent(models.Model):
    """Every webhook event, stored once by its Stripe id before it is handled (a replay is a no-op)."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"
        # A payment event that does not match the attempt on record: kept, reported, not applied.
        MISMATCH = "mismatch", "Does not match our records"

    stripe_event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    payload = models.JSONField()
    handler_error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_event_id}"


class TrialNotice(models.Model):
    """A trial email that went out: the hourly trial run sends each kind once per customer."""

    class Kind(models.TextChoices):
        ENDING = "ending", "Trial ends soon"
        ENDED = "ended", "Trial ended"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="trial_notices")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "kind"], name="one_trial_notice_per_kind")]


class CreditEntry(models.Model):
    """The customer's credit balance as a ledger: staff grant credit (+), invoices use it (−).

    The balance is the sum; credit beyond an invoice's charges stays for the next one, never lost.
    """

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_entries")
    amount = models.DecimalField(**MONEY)
    reason = models.CharField(max_length=200)
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="credit_entries")
    created_by = models.CharField(max_length=150, blank=True, help_text="The staff member who granted it")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "credit entries"
        constraints = [
            # An invoice uses the balance once: its issue writes one debit.
            models.UniqueConstraint(fields=["invoice"], condition=Q(invoice__isnull=False), name="one_credit_use_per_invoice"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.reason}"


class BillingDetails(models.Model):
    """Who an invoice is billed to, as the customer wrote it in the portal (README "Billing").

    Printed on the invoice PDF as it is when the PDF is made; without a row the PDF bills the
    company name and email the account was opened with.
    """

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="billing_details")
    name = models.CharField("Billing name", max_length=150, blank=True, help_text="The legal name on invoices")
    address = models.TextField("Address", max_length=500, blank=True, help_text="Street, city, postal code: one per line")
    country = models.CharField("Country", max_length=60, blank=True)
    tax_id = models.CharField("Tax ID", max_length=40, blank=True, help_text="VAT, GST or EIN number, if you have one")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "billing details"

    def __str__(self) -> str:
        return self.name or str(self.customer)
