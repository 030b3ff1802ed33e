"""Billing emails: one function each, sent from Celery tasks (never with card data)."""
from __future__ import annotations

from django.conf import settings

from accounts.emails import email_send
from accounts.models import Customer

from .invoice_pdf import invoice_pdf, invoice_pdf_filename
from .models import Invoice, PaymentAttempt, PaymentMethod


def payment_failed_email_send(*, attempt_id: int) -> None:
    attempt = PaymentAttempt.objects.select_related("invoice__customer__owner").get(pk=attempt_id)
    invoice = attempt.invoice
    email_send(
        to=invoice.customer.email, template="payment_failed",
        context={"customer": invoice.customer, "invoice": invoice, "attempt": attempt,
                 "grace_days": settings.BILLING_GRACE_DAYS},
    )


def _pdf_attachment(invoice: Invoice) -> tuple[str, bytes, str]:
    return invoice_pdf_filename(invoice), invoice_pdf(invoice=invoice), "application/pdf"


def invoice_issued_email_send(*, invoice_id: int) -> None:
    invoice = Invoice.objects.select_related("customer__owner", "plan").get(pk=invoice_id)
    email_send(
        to=invoice.customer.email, template="invoice_issued",
        context={"customer": invoice.customer, "invoice": invoice, "lines": list(invoice.lines.all())},
        attachments=[_pdf_attachment(invoice)],
    )


def payment_received_email_send(*, invoice_id: int) -> None:
    """The receipt: sent when an issued invoice is paid (a charge, or staff marking it paid)."""
    invoice = Invoice.objects.select_related("customer__owner", "plan").get(pk=invoice_id)
    email_send(
        to=invoice.customer.email, template="payment_received",
        context={"customer": invoice.customer, "invoice": invoice},
        attachments=[_pdf_attachment(invoice)],
    )


def trial_email_send(*, customer_id: int, kind: str) -> None:
    """kind "ending": a reminder before the trial ends; "ended": what happened when it did."""
    customer = Customer.objects.select_related("owner", "plan").get(pk=customer_id)
    has_card = PaymentMethod.objects.filter(customer=customer).exists()
    email_send(to=customer.email, template=f"trial_{kind}", context={"customer": customer, "has_card": has_card})
