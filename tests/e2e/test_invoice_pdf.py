"""Invoices as documents in a real browser, at a desktop and a phone width: the customer saves
billing details, downloads an invoice's PDF from the list and from the invoice page, and the PDF
holds the number, the lines, the total and those details; axe finds no serious violation."""
from __future__ import annotations

import io
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pypdf
import pytest
from django.db import connection
from playwright.sync_api import expect

from tests.e2e.helpers import WIDTHS, log_in as _log_in, overflowing as _overflowing, serious as _serious

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture
def invoice(transactional_db) -> dict:
    """An issued, open invoice with a base, an overage and a credit line (made before the browser starts)."""
    from django.utils import timezone

    from billing.models import Invoice, InvoiceLine
    from tests.factories import CustomerFactory, UserFactory, seeded_plan
    from tests.page_factories import seeded_public_plans

    seeded_public_plans()
    now = timezone.now()
    customer = CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Société Analytique",
                               plan=seeded_plan("starter"), created_at=now - timedelta(days=60))
    last = now.replace(day=1) - timedelta(days=1)
    row = Invoice.objects.create(
        customer=customer, period=f"{last:%Y-%m}", number=f"TB-{last:%Y}-000007", status=Invoice.Status.OPEN,
        subtotal=Decimal("450.67"), total=Decimal("438.17"), plan=customer.plan, calls=1_401_667, issued_at=now)
    InvoiceLine.objects.bulk_create([
        InvoiceLine(invoice=row, kind="base", description="Starter plan, whole month", quantity=30,
                    unit_price=Decimal("49.00"), amount=Decimal("49.00"), position=0),
        InvoiceLine(invoice=row, kind="overage", description="Overage: calls beyond 1,000,000", quantity=401_667,
                    unit_price=Decimal("0.001"), amount=Decimal("401.67"), position=1),
        InvoiceLine(invoice=row, kind="credit", description="Credit: outage", quantity=1,
                    unit_price=Decimal("-12.50"), amount=Decimal("-12.50"), position=2),
    ])
    connection.close()
    return {"pk": row.pk, "number": row.number}


def _pdf_text(download) -> str:
    content = Path(download.path()).read_bytes()
    assert content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(content)).pages)


def _page_problems(page, where: str) -> list[str]:
    problems = [f"{where}: {v}" for v in _serious(page, where)]
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner:
        problems.append(f"{where}: scrolls sideways ({scroll}px > {inner}px), widest: {_overflowing(page)}")
    return problems


@pytest.mark.parametrize("name", list(WIDTHS))
def test_billing_details_then_the_invoice_pdf_from_the_list_and_the_page(live_server, browser, invoice, name):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": WIDTHS[name], "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    problems: list[str] = []
    _log_in(page, live_server, "ada@example.com")

    page.goto(f"{live_server.url}/portal/billing/")
    page.get_by_role("link", name="Billing details for invoices").click()
    page.wait_for_url(re.compile(r"/portal/billing/details/$"))
    problems += _page_problems(page, f"/portal/billing/details/ at {name}")
    page.get_by_label("Billing name").fill("Société Analytique SAS")
    page.get_by_label("Address").fill("12 rue de Rivoli\n75001 Paris")
    page.get_by_label("Country").fill("France")
    page.get_by_label("Tax ID").fill("FR40303265045")
    page.screenshot(path=str(ARTIFACTS / f"billing-details-{name}.png"), full_page=True)
    page.get_by_role("button", name="Save details").click()
    page.wait_for_url(re.compile(r"/portal/billing/$"))
    expect(page.get_by_role("status")).to_contain_text("Billing details saved")
    problems += _page_problems(page, f"/portal/billing/ at {name}")
    page.screenshot(path=str(ARTIFACTS / f"billing-with-pdf-{name}.png"), full_page=True)

    with page.expect_download() as from_list:
        page.get_by_role("link", name=f"PDF of invoice {invoice['number']}").click()
    assert from_list.value.suggested_filename == f"{invoice['number']}.pdf"
    text = _pdf_text(from_list.value)
    for expected in (f"Invoice {invoice['number']}", "Starter plan, whole month", "$49.00", "$401.67", "−$12.50",
                     "Total (USD) $438.17", "Société Analytique SAS", "75001 Paris", "Tax ID: FR40303265045"):
        assert expected in text, expected

    page.get_by_role("link", name=invoice["number"], exact=True).click()
    page.wait_for_url(re.compile(rf"/portal/billing/invoices/{invoice['pk']}/$"))
    problems += _page_problems(page, f"invoice page at {name}")
    page.screenshot(path=str(ARTIFACTS / f"invoice-with-pdf-{name}.png"), full_page=True)
    with page.expect_download() as from_page:
        page.get_by_role("link", name="Download PDF").click()
    assert f"Invoice {invoice['number']}" in _pdf_text(from_page.value)

    context.close()
    assert problems == [] and errors == []
