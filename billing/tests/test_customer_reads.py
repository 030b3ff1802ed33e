"""What an invoice tells the customer is true (issue 13, item 12): how a paid invoice was paid,
and each line's amount as the arithmetic a person can check ("$49.00 × 10/30 days")."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core import mail
from django.test import Client

from accounts.models import Customer
from billing.emails import invoice_issued_email_send
from billing.models import Invoice, InvoiceLine, PaymentAttempt
from plans.templatetags.money import dollars, line_rate
from tests.factories import CustomerFactory, seeded_plan

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_outside_task")]

PAID_AT = datetime(2026, 12, 1, 0, 40, tzinfo=dt_timezone.utc)


def signed_in(customer: Customer) -> Client:
    client = Client()
    client.force_login(customer.owner)
    return client


def paid_invoice(customer: Customer, *, total: str, paid_by: str = "", period: str = "2026-11") -> Invoice:
    return Invoice.objects.create(
        customer=customer, period=period, number=f"TB-2026-{customer.pk:04d}{period[-2:]}", status=Invoice.Status.PAID,
        subtotal=Decimal(total), total=Decimal(total), plan=customer.plan, calls=0,
        issued_at=PAID_AT, paid_at=PAID_AT, paid_by=paid_by,
    )


def invoice_page(customer: Customer, invoice: Invoice) -> str:
    response = signed_in(customer).get(f"/portal/billing/invoices/{invoice.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def billing_page(customer: Customer) -> str:
    response = signed_in(customer).get("/portal/billing/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("paid_by,phrase", [
    ("Visa ••4242", "Paid with Visa ••4242 on 1 Dec 2026"),
    ("bank transfer", "Marked paid: bank transfer on 1 Dec 2026"),
    ("credit balance", "Paid from your credit balance on 1 Dec 2026"),
    ("", "Paid on 1 Dec 2026"),  # paid before Invoice.paid_by existed
])
def test_a_paid_invoice_says_how_it_was_paid_on_its_page_and_in_the_list(customer, paid_by, phrase):
    invoice = paid_invoice(customer, total="61.50", paid_by=paid_by)

    page, listing = invoice_page(customer, invoice), billing_page(customer)

    assert f'id="invoice-paid-by">{phrase}.</p>' in page
    assert f'<span class="muted invoice-paid-by">{phrase}</span>' in listing
    assert "Nothing to charge" not in page and "Nothing to charge" not in listing


def test_a_charged_invoice_shows_its_attempts_and_how_it_was_paid(customer):
    invoice = paid_invoice(customer, total="61.50", paid_by="Visa ••4242")
    PaymentAttempt.objects.create(invoice=invoice, number=1, amount=invoice.total, status=PaymentAttempt.Status.SUCCEEDED)

    page = invoice_page(customer, invoice)

    assert page.count('class="attempt-row"') == 1
    assert 'id="invoice-paid-by">Paid with Visa ••4242 on 1 Dec 2026.</p>' in page
    assert "No payment yet" not in page


def test_only_a_zero_invoice_has_nothing_to_charge(customer):
    invoice = paid_invoice(customer, total="0.00")

    page, listing = invoice_page(customer, invoice), billing_page(customer)

    assert 'id="invoice-paid-by">Nothing to charge.</p>' in page
    assert '<span class="muted invoice-paid-by">Nothing to charge</span>' in listing


def test_an_open_invoice_says_no_payment_yet_and_nothing_about_paying(customer):
    invoice = paid_invoice(customer, total="61.50")
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.OPEN, paid_at=None)

    page, listing = invoice_page(customer, invoice), billing_page(customer)

    assert "No payment yet." in page and 'id="invoice-paid-by"' not in page
    assert "invoice-paid-by" not in listing


def test_the_issued_email_of_an_invoice_paid_by_the_time_it_is_sent_says_how(customer):
    invoice = paid_invoice(customer, total="1999.01", paid_by="Visa ••4242")

    invoice_issued_email_send(invoice_id=invoice.pk)

    body = mail.outbox[0].body
    assert "Total: $1,999.01 USD" in body
    assert "Paid with Visa ••4242 on 1 Dec 2026: this invoice is settled." in body
    assert "Nothing to pay" not in body


def line(kind: str, quantity: str, unit_price: str, amount: str) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, quantity=Decimal(quantity), unit_price=Decimal(unit_price), amount=Decimal(amount))


@pytest.mark.parametrize("row,period,printed", [
    (line("base", "10", "49.00", "16.33"), "2026-11", "$49.00 × 10/30 days"),        # 49 × 10 ÷ 30 = 16.333…
    (line("base", "30", "49.00", "49.00"), "2026-11", "$49.00 × 30/30 days"),
    (line("base", "14", "199.00", "99.50"), "2027-02", "$199.00 × 14/28 days"),      # February has 28
    (line("base", "31", "999.00", "999.00"), "2026-12", "$999.00 × 31/31 days"),
    (line("overage", "401667", "0.001000", "401.67"), "2026-11", "401,667 × $0.001"),
    (line("overage", "1", "0.000500", "0.00"), "2026-11", "1 × $0.0005"),            # rounds half-up to $0.00
    # A row written under the old rule (a per-day unit price): its days, never "$1.633333".
    (line("base", "30", "1.633333", "49.00"), "2026-11", "30 days"),
    (line("overage", "12500", "0.001", "10.00"), "2026-11", "12,500 calls"),         # not price × calls: no "×"
    (line("credit", "1", "-20.00", "-12.50"), "2026-11", ""),
])
def test_a_line_prints_the_arithmetic_that_gives_its_amount(row, period, printed):
    assert line_rate(row, period) == printed


def test_amounts_always_show_cents_and_a_credit_its_minus_sign():
    assert [dollars(Decimal(v)) for v in ("49", "1999.005", "-12.5", "0")] == ["$49.00", "$1,999.01", "−$12.50", "$0.00"]


def test_the_invoice_page_prints_base_overage_and_credit_lines_as_people_read_them(customer):
    invoice = Invoice.objects.create(
        customer=customer, period="2026-11", number="TB-2026-000777", status=Invoice.Status.OPEN, plan=customer.plan,
        subtotal=Decimal("437.42"), total=Decimal("424.92"), calls=450_000, issued_at=PAID_AT,
    )
    starter, pro = seeded_plan("starter"), seeded_plan("pro")
    rows = [
        ("base", "Starter, 1–10 Nov", "10", "49.00", "16.33", starter),
        ("base", "Professional, 11–30 Nov", "20", "199.00", "132.67", pro),
        ("overage", "Starter, 1–10 Nov: 288,420 calls beyond 16,667 included", "288420", "0.001000", "288.42", starter),
        ("credit", "Goodwill credit", "1", "-12.50", "-12.50", None),
    ]
    for position, (kind, description, quantity, unit_price, amount, plan) in enumerate(rows):
        InvoiceLine.objects.create(invoice=invoice, kind=kind, description=description, quantity=Decimal(quantity),
                                   unit_price=Decimal(unit_price), amount=Decimal(amount), plan=plan, position=position)

    page = invoice_page(customer, invoice)

    assert page.count('class="invoice-line"') == 4
    assert '<td class="num line-rate">$49.00 × 10/30 days</td>\n          <td class="num">$16.33</td>' in page
    assert '<td class="num line-rate">$199.00 × 20/30 days</td>\n          <td class="num">$132.67</td>' in page
    assert '<td class="num line-rate">288,420 × $0.001</td>\n          <td class="num">$288.42</td>' in page
    assert '<td class="num line-rate"></td>\n          <td class="num">−$12.50</td>' in page
    assert 'id="invoice-total">$424.92<' in page
    assert "6.633333" not in page and "1.633333" not in page and "0.001000" not in page


def test_a_customer_never_sees_another_customers_invoice_lines(customer):
    other = CustomerFactory(plan=customer.plan)
    invoice = paid_invoice(other, total="61.50", paid_by="Visa ••4242")

    assert signed_in(customer).get(f"/portal/billing/invoices/{invoice.pk}/").status_code == 404
    assert "invoice-paid-by" not in billing_page(customer)
