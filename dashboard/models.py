"""What the nightly reconciliation found: one row per drift between two records of the same usage."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Customer


class ReconciliationIssue(models.Model):
    """`expected` is the figure the source should show, `found` what it shows (calls or dollars).

    One row per customer, period and source: a later run updates it, and deletes it when the
    two figures agree again.
    """

    class Source(models.TextChoices):
        REDIS = "redis", "Redis month counter vs Postgres usage + unflushed"
        INVOICE_CALLS = "invoice_calls", "Invoice calls vs Postgres usage"
        INVOICE_OVERAGE = "invoice_overage", "Invoice overage line vs the overage of recorded usage"
        STRIPE = "stripe", "Stripe charge vs invoice total"
        MISSING_INVOICE = "missing_invoice", "Billable days or usage in a closed period, no invoice"
        PAYMENT_MISMATCH = "payment_mismatch", "A Stripe payment event that matches no attempt on record"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="reconciliation_issues")
    period = models.CharField(max_length=7, help_text="YYYY-MM, UTC")
    source = models.CharField(max_length=20, choices=Source.choices)
    expected = models.DecimalField(max_digits=20, decimal_places=2)
    found = models.DecimalField(max_digits=20, decimal_places=2)
    invoice = models.ForeignKey("billing.Invoice", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    checked_at = models.DateTimeField(default=timezone.now)
    # Staff explained the drift (README "Staff console"): it leaves the open list, and a later
    # run that still finds it keeps it resolved; a run that finds the figures agree deletes it.
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolution_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-period", "source", "customer_id"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "period", "source"], name="one_issue_per_source"),
        ]
        indexes = [models.Index(fields=["period"])]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.period} {self.source}: expected {self.expected}, found {self.found}"

    @property
    def difference(self):
        return self.found - self.expected


class StaffAction(models.Model):
    """What a staff member did to a customer from the staff console: who, when, what, and why.

    Written in the same transaction as the change itself, so there is never one without the other.
    """

    class Kind(models.TextChoices):
        PLAN_CHANGE = "plan_change", "Changed the plan"
        TRIAL_EXTEND = "trial_extend", "Extended the trial"
        CREDIT_ADD = "credit_add", "Added credit"
        INVOICE_PAID = "invoice_paid", "Marked an invoice paid"
        INVOICE_VOID = "invoice_void", "Voided an invoice"
        INVOICE_RESEND = "invoice_resend", "Resent the invoice email"
        CANCEL = "cancel", "Cancelled the account"
        ISSUE_RESOLVE = "issue_resolve", "Resolved a reconciliation issue"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="staff_actions")
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    # Kept as text too: the record still says who after the staff account is deleted.
    staff_name = models.CharField(max_length=150)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    summary = models.CharField(max_length=300, help_text="What changed, e.g. Starter → Pro, $25.00")
    note = models.TextField(blank=True)
    invoice = models.ForeignKey("billing.Invoice", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["customer", "created_at"])]

    def __str__(self) -> str:
        return f"{self.staff_name}: {self.get_kind_display()} ({self.summary})"
