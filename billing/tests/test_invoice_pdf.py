"""Invoices as documents: each issued invoice as a PDF (seller, billing details, lines, totals),
downloadable from the portal and attached to the invoice and receipt emails (README "Billing")."""
from __future__ import annotations

import io
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import pypdf
import pytest
from django.core import mail
from django.test import Client

from accounts.models import Customer
from billing.emails import invoice_issued_email_send
from billing.invoice_pdf import invoice_pdf
from billing.invoicing import invoice_mark_paid
from billing.models import BillingDetails, Invoice, InvoiceLine
from tests.factories import CustomerFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_outside_task")]

ISSUED = datetime(2026, 12, 1, 0, 30, tzinfo=dt_timezone.utc)


def issued_invoice(customer: Customer, *, status: str = Invoice.Status.OPEN, period: str = "2026-11") -> Invoice:
    invoice = Invoice.objects.create(
        customer=customer, period=period, number=f"TB-2026-{customer.pk:04d}{period[-2:]}", status=status,
        subtotal=Decimal("450.67"), total=Decimal("438.17"), plan=customer.plan, calls=1_401_667,
        issued_at=ISSUED, paid_at=ISSUED if status == Invoice.Status.PAID else None,
        paid_by="Visa ••4242" if status == Invoice.Status.PAID else "",
    )
    InvoiceLine.objects.bulk_create([
        InvoiceLine(invoice=invoice, kind="base", description="Starter plan, 1–30 Nov", quantity=30,
                    unit_price=Decimal("49.00"), amount=Decimal("49.00"), position=0),
        InvoiceLine(invoice=invoice, kind="overage", description="Overage: calls beyond 1,000,000",
                    quantity=401_667, unit_price=Decimal("0.001"), amount=Decimal("401.67"), position=1),
        InvoiceLine(invoice=invoice, kind="credit", description="Credit: outage on 3 Nov", quantity=1,
                    unit_price=Decimal("-12.50"), amount=Decimal("-12.50"), position=2),
    ])
    return invoice


def pdf_text(content: bytes) -> str:
    assert content.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(content))
    # Extracted text keeps the words but not always the spaces between table cells.
    return "\n".join(page.extract_text() for page in reader.pages)


def signed_in(customer: Customer) -> Client:
    client = Client()
    client.force_login(customer.owner)
    return client


def test_the_pdf_has_the_number_each_line_and_the_stored_total(customer, settings):
    settings.SELLER_NAME, settings.SELLER_ADDRESS, settings.SELLER_TAX_ID = (
        "Tollbooth Inc.", "1 Market St | San Francisco CA 94105", "US-EIN 12-3456789")
    BillingDetails.objects.create(customer=customer, name="Ada Analytics Ltd", address="10 Downing Lane\nLondon SW1",
                                  country="United Kingdom", tax_id="GB123456789")
    invoice = issued_invoice(customer)

    text = pdf_text(invoice_pdf(invoice=invoice))

    assert f"Invoice {invoice.number}" in text
    for line in ("Starter plan, 1–30 Nov", "$49.00", "Overage: calls beyond 1,000,000", "$401.67",
                 "Credit: outage on 3 Nov", "−$12.50", "Subtotal $450.67"):
        assert line in text, line
    assert "Total (USD) $438.17" in text
    for seller in ("Tollbooth Inc.", "1 Market St", "San Francisco CA 94105", "Tax ID: US-EIN 12-3456789"):
        assert seller in text, seller
    for buyer in ("Ada Analytics Ltd", "10 Downing Lane", "London SW1", "United Kingdom", "Tax ID: GB123456789"):
        assert buyer in text, buyer
    assert "Period 2026-11" in text and "Issued: 01 December 2026" in text and "1,401,667 billable API calls" in text
    assert "401,667 × $0.001" in text  # the page's own rate column


def test_a_paid_invoice_says_how_and_without_billing_details_the_company_is_billed(customer):
    invoice = issued_invoice(customer, status=Invoice.Status.PAID)

    text = pdf_text(invoice_pdf(invoice=invoice))

    assert "Status: Paid" in text and "Paid with Visa ••4242 on 1 Dec 2026." in text
    assert customer.company in text and customer.email in text


@pytest.mark.parametrize("name", ["Café Zürich Société Générale", "東京データ株式会社", "Rocket 🚀 Labs", "Ωmega ‮evil"])
def test_any_name_makes_a_pdf(customer, name):
    Customer.objects.filter(pk=customer.pk).update(company=name)
    BillingDetails.objects.create(customer=customer, name=name, address=f"{name}\nÎle-de-France", country="Ελλάδα")
    invoice = issued_invoice(Customer.objects.get(pk=customer.pk))

    text = pdf_text(invoice_pdf(invoice=invoice))

    assert f"Invoice {invoice.number}" in text and "Île-de-France" in text and "Ελλάδα" in text
    if name.startswith("Café"):
        assert name in text  # Latin-1 and beyond print as written; a glyph no font has prints as "?"


def test_without_a_unicode_font_on_the_system_the_pdf_falls_back_to_the_core_font(customer, monkeypatch):
    from billing import invoice_pdf as module

    monkeypatch.setattr(module, "_font_files", lambda: (None, ()))
    Customer.objects.filter(pk=customer.pk).update(company="Café 東京 🚀")
    invoice = issued_invoice(Customer.objects.get(pk=customer.pk))

    text = pdf_text(invoice_pdf(invoice=invoice))

    assert "Café ?? ?" in text and "-$12.50" in text and "Total (USD) $438.17" in text
    assert "Starter plan, 1-30 Nov" in text


def test_a_draft_has_no_pdf(customer):
    invoice = issued_invoice(customer, status=Invoice.Status.DRAFT)

    with pytest.raises(ValueError, match="draft invoice has no PDF"):
        invoice_pdf(invoice=invoice)
    assert signed_in(customer).get(f"/portal/billing/invoices/{invoice.pk}/pdf/").status_code == 404


def test_the_portal_downloads_the_customers_own_pdf_and_no_one_elses(customer):
    invoice = issued_invoice(customer)
    other = CustomerFactory(plan=customer.plan)

    response = signed_in(customer).get(f"/portal/billing/invoices/{invoice.pk}/pdf/")

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    assert invoice.number in pdf_text(response.content)
    assert signed_in(other).get(f"/portal/billing/invoices/{invoice.pk}/pdf/").status_code == 404
    assert signed_in(customer).get("/portal/billing/invoices/99999999/pdf/").status_code == 404
    anonymous = Client().get(f"/portal/billing/invoices/{invoice.pk}/pdf/")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_the_invoice_page_and_the_list_link_the_pdf(customer):
    invoice = issued_invoice(customer)
    client = signed_in(customer)
    link = f'href="/portal/billing/invoices/{invoice.pk}/pdf/"'

    assert link in client.get(f"/portal/billing/invoices/{invoice.pk}/").content.decode()
    listing = client.get("/portal/billing/").content.decode()
    assert link in listing and 'href="/portal/billing/details/"' in listing


def test_the_invoice_page_shows_the_seller_and_billing_details_the_pdf_prints(customer, settings):
    settings.SELLER_NAME, settings.SELLER_ADDRESS, settings.SELLER_TAX_ID = ("Tollbooth Inc.", "1 Market St", "EIN 1")
    BillingDetails.objects.create(customer=customer, name="Ada <Analytics>", address="10 Downing Lane\nLondon",
                                  tax_id="GB1")
    invoice = issued_invoice(customer)

    page = signed_in(customer).get(f"/portal/billing/invoices/{invoice.pk}/").content.decode()

    assert '<dd id="invoice-seller">Tollbooth Inc.<br>1 Market St<br>Tax ID: EIN 1</dd>' in page
    assert ('<dd id="invoice-buyer">Ada &lt;Analytics&gt;<br>10 Downing Lane<br>London<br>Tax ID: GB1<br>'
            f'{customer.email}</dd>') in page


def test_billing_details_saved_in_the_portal_print_on_the_pdf(customer):
    client = signed_in(customer)
    assert client.get("/portal/billing/details/").status_code == 200

    response = client.post("/portal/billing/details/", {
        "name": "  Ada   Analytics\nLtd ", "address": "10 Downing Lane\r\nLondon SW1", "country": "United Kingdom",
        "tax_id": "GB 123 456 789"})

    assert response.status_code == 302 and response["Location"] == "/portal/billing/"
    details = BillingDetails.objects.get(customer=customer)
    assert (details.name, details.tax_id) == ("Ada Analytics Ltd", "GB 123 456 789")
    text = pdf_text(invoice_pdf(invoice=issued_invoice(customer)))
    assert "Ada Analytics Ltd" in text and "London SW1" in text and "Tax ID: GB 123 456 789" in text
    # Saving again edits the same row.
    client.post("/portal/billing/details/", {"name": "Ada Two", "address": "", "country": "", "tax_id": ""})
    assert list(BillingDetails.objects.filter(customer=customer).values_list("name", flat=True)) == ["Ada Two"]


def test_billing_details_refuse_what_does_not_fit(customer):
    response = signed_in(customer).post("/portal/billing/details/", {"name": "x" * 151, "address": "", "country": "",
                                                                     "tax_id": ""})

    assert response.status_code == 200
    assert response.context["form"].errors["name"][0].startswith("Ensure this value has at most 150 characters")
    assert not BillingDetails.objects.exists()


def test_the_invoice_email_carries_the_pdf(customer):
    invoice = issued_invoice(customer)

    invoice_issued_email_send(invoice_id=invoice.pk)

    [email] = mail.outbox
    [(filename, content, mimetype)] = email.attachments
    assert (filename, mimetype) == (f"{invoice.number}.pdf", "application/pdf")
    assert "$438.17" in pdf_text(content)


def test_paying_an_invoice_sends_one_receipt_with_the_pdf(customer, django_capture_on_commit_callbacks):
    invoice = issued_invoice(customer)

    with django_capture_on_commit_callbacks(execute=True):
        invoice_mark_paid(invoice=invoice, paid_by="bank transfer")
    with django_capture_on_commit_callbacks(execute=True):
        invoice_mark_paid(invoice=invoice, paid_by="bank transfer")  # already paid: no second receipt

    [email] = mail.outbox
    assert email.subject == f"Receipt: Tollbooth invoice {invoice.number} paid, $438.17"
    assert "Marked paid: bank transfer on" in email.body and f"/portal/billing/invoices/{invoice.pk}/" in email.body
    [(filename, content, _)] = email.attachments
    assert filename == f"{invoice.number}.pdf"
    assert "Status: Paid" in pdf_text(content) and "Marked paid: bank transfer" in pdf_text(content)
