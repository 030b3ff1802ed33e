"""Generate and issue a closed period's invoices (what the month close does), safe to re-run."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import Customer
from core.periods import day_start, period_bounds
from billing.models import Invoice
from billing.invoicing import invoice_generate, invoice_issue
from billing.tasks import UsageUnflushed, invoices_generate_all, invoices_issue_all, usage_flush_all


class Command(BaseCommand):
    help = "Generate and issue the invoices of a finished month: one line per invoice (customer id, number, total)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--period", required=True, help="YYYY-MM (UTC)")
        parser.add_argument("--customer", type=int, help="Only this customer id")

    def handle(self, *args, period: str, customer: int | None, **options) -> None:
        try:
            _, end = period_bounds(period)
        except ValidationError as error:
            raise CommandError(error.messages[0]) from error
        if day_start(end) > timezone.now():
            # Issuing freezes an invoice: a month still running would be billed short for good.
            raise CommandError(f"{period} is not over yet; its invoices are issued from {end:%Y-%m-%d} UTC.")
        _usage_flush()
        if customer is None:
            invoices_generate_all(period=period)
            invoices_issue_all(period=period)
            invoices = Invoice.objects.filter(period=period).order_by("customer_id")
        else:
            invoices = [self._one(customer, period)]
        for invoice in invoices:
            self.stdout.write(f"{invoice.customer_id} {invoice.number or '-'} {invoice.total}")

    def _one(self, customer_id: int, period: str) -> Invoice:
        customer = Customer.objects.filter(pk=customer_id).first()
        if customer is None:
            raise CommandError(f"No customer with id {customer_id}.")
        try:
            return invoice_issue(invoice=invoice_generate(customer=customer, period=period))
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error


def _usage_flush() -> None:
    """The month close's flush: an issued invoice never changes, so none is issued without the
    calls Redis still holds."""
    try:
        usage_flush_all()
    except UsageUnflushed as error:
        raise CommandError(f"{error}. Nothing was invoiced; run it again when Redis is back.") from error
