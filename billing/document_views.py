"""The portal's invoice documents: each issued invoice as a PDF, and the billing details printed on it."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from accounts.decorators import customer_required
from accounts.models import Customer

from .forms import BillingDetailsForm
from .invoice_pdf import invoice_pdf, invoice_pdf_filename
from .models import BillingDetails, Invoice


@require_GET
@never_cache
@customer_required("billing")
def invoice_pdf_download(request: HttpRequest, customer: Customer, invoice_id: int) -> HttpResponse:
    # As on the invoice page: another customer's invoice, or a draft, is no invoice at all.
    invoice = (
        Invoice.objects.filter(pk=invoice_id, customer=customer).exclude(status=Invoice.Status.DRAFT)
        .select_related("plan", "customer").first() if 0 < invoice_id < 2**63 else None
    )
    if invoice is None:
        raise Http404("No such invoice")
    response = HttpResponse(invoice_pdf(invoice=invoice), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{invoice_pdf_filename(invoice)}"'
    return response


@require_http_methods(["GET", "POST"])
@customer_required("billing")
def billing_details(request: HttpRequest, customer: Customer) -> HttpResponse:
    details = BillingDetails.objects.filter(customer=customer).first() or BillingDetails(customer=customer)
    form = BillingDetailsForm(request.POST or None, instance=details)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        saved.updated_at = timezone.now()
        saved.save()
        messages.success(request, "Billing details saved. Invoice PDFs show them from now on.")
        return redirect("billing")
    return render(request, "billing/details.html", {"customer": customer, "form": form})
