"""What staff do by hand on a customer's billing that the automatic paths never do (README "Staff console"):
extend a trial, record a payment made outside Stripe, void an open invoice. Each keeps billing's rules:
an issued invoice's amounts never change, only its status."""
from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Customer

from .invoicing import invoice_mark_paid, invoice_void
from .models import Invoice, TrialNotice

MAX_TRIAL_EXTENSION_DAYS = 30
PAYMENT_METHODS = {"bank_transfer": "bank transfer", "cheque": "cheque", "cash": "cash", "other": "other"}


@transaction.atomic
def trial_extend(*, customer: Customer, days: int) -> Customer:
    """Push a running trial's end back by `days`; the reminder goes out again before the new end."""
    if not isinstance(days, int) or not 1 <= days <= MAX_TRIAL_EXTENSION_DAYS:
        raise ValidationError({"days": f"Extend by 1 to {MAX_TRIAL_EXTENSION_DAYS} days."})
    locked = Customer.objects.select_for_update().get(pk=customer.pk)
    now = timezone.now()
    if locked.status != Customer.Status.TRIAL or locked.trial_ends_at is None or locked.trial_ends_at <= now:
        raise ValidationError({"days": "Only a running trial can be extended."})
    locked.trial_ends_at += timedelta(days=days)
    locked.save(update_fields=["trial_ends_at"])
    TrialNotice.objects.filter(customer=locked, kind=TrialNotice.Kind.ENDING).delete()
    customer.trial_ends_at = locked.trial_ends_at
    return locked


def invoice_pay_manual(*, invoice: Invoice, method: str, reference: str) -> Invoice:
    """Money received outside Stripe. The customer reads "bank transfer, ref 8842-A" as how it was paid."""
    if method not in PAYMENT_METHODS:
        raise ValidationError({"method": "Choose how the invoice was paid."})
    reference = " ".join((reference or "").split())
    if not reference:
        raise ValidationError({"reference": "Give the payment's reference (the transfer or cheque number)."})
    if invoice.status == Invoice.Status.PAID:
        raise ValidationError({"invoice": "This invoice is paid already."})
    return invoice_mark_paid(invoice=invoice, paid_by=f"{PAYMENT_METHODS[method]}, ref {reference}"[:60])


@transaction.atomic
def invoice_void_open(*, invoice: Invoice) -> Invoice:
    """Void an open invoice (one sent in error). Any other status is refused: an uncollectible or paid
    one stays on the books, and a correction is a credit on the next invoice."""
    status = Invoice.objects.select_for_update().filter(pk=invoice.pk).values_list("status", flat=True).first()
    if status != Invoice.Status.OPEN:
        raise ValidationError({"invoice": "Only an open invoice can be voided; credit the customer on the next one instead."})
    return invoice_void(invoice=invoice)
