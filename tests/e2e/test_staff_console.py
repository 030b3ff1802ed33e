"""The staff console in a real browser, at a desktop and a phone width: search → customer → add
credit → mark an invoice paid, and the customer's own portal then shows the credit and the paid
invoice; axe-core finds no serious or critical violation on the console's pages."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from tests.e2e.helpers import overflowing as _overflowing, serious as _serious

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def book(transactional_db):
    """A paying customer with usage, an open invoice and a drift; a staff member. Made before the
    browser starts (outside Playwright's event loop)."""
    from django.utils import timezone

    from accounts.services import api_key_issue
    from dashboard.models import ReconciliationIssue
    from tests.factories import CustomerFactory, InvoiceFactory, InvoiceLineFactory, UsageRecordFactory, UserFactory, seeded_plan
    from tests.page_factories import seeded_public_plans

    seeded_public_plans()
    now = timezone.now()
    UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    customer = CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Analytical Engines",
                               plan=seeded_plan("starter"), created_at=now - timedelta(days=90),
                               stripe_customer_id="cus_ADA")
    key = api_key_issue(customer=customer, name="Production").key
    for offset in range(40):
        for product in ("geocode", "text"):
            UsageRecordFactory(customer=customer, api_key=key, product=product,
                               day=(now - timedelta(days=offset)).date(), calls=300 + offset)
    last = now.replace(day=1) - timedelta(days=1)
    invoice = InvoiceFactory(customer=customer, period=f"{last:%Y-%m}", status="open", total=Decimal("59.00"),
                             subtotal=Decimal("59.00"), issued_at=last, number="TB-2026-000123")
    InvoiceLineFactory(invoice=invoice, kind="base", amount=Decimal("59.00"))
    ReconciliationIssue.objects.create(customer=customer, period=f"{last:%Y-%m}", source="stripe",
                                       expected=Decimal("59.00"), found=Decimal("0.00"), invoice=invoice)
    connection.close()
    return {"customer": customer.pk, "invoice": invoice.pk}


def _log_in(page, live_server, email: str, lands_on: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(re.escape(lands_on) + "$"))


def _fits_and_passes_axe(page, where: str, problems: list[str]) -> None:
    page.wait_for_load_state("networkidle")
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner:
        problems.append(f"{where}: scrolls sideways ({scroll}px > {inner}px), widest: {_overflowing(page)}")
    problems.extend(f"{where}: {v}" for v in _serious(page, where))


@pytest.mark.parametrize("width", [1280, 390])
def test_staff_find_a_customer_add_credit_mark_paid_and_the_customer_sees_it(live_server, book, browser, width):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()

    _log_in(page, live_server, "staff@example.com", "/dashboard/")
    expect(page.locator("#open-issues")).to_contain_text("1 open drift")
    page.goto(f"{live_server.url}/dashboard/customers/")
    page.get_by_label("Email, company, Stripe id or a key's last 8").fill("ada@")
    page.get_by_role("button", name="Search").click()
    _fits_and_passes_axe(page, f"/dashboard/customers/ at {width}", problems)
    page.screenshot(path=str(ARTIFACTS / f"staff-customers-{width}.png"), full_page=True)
    page.get_by_role("link", name="Analytical Engines").click()
    page.wait_for_url(re.compile(r"/dashboard/customers/\d+/$"))
    expect(page.get_by_role("heading", name="Analytical Engines", level=1)).to_be_visible()
    assert page.locator("svg.chart").count() == 1
    _fits_and_passes_axe(page, f"customer page at {width}", problems)
    page.screenshot(path=str(ARTIFACTS / f"staff-customer-{width}.png"), full_page=True)

    # The browser's own checks stop a zero amount; the server's form errors are tested without one.
    page.locator("#box-credit summary").click()
    credit = page.locator("#action-credit")
    credit.get_by_label("Amount ($)").fill("12.50")
    credit.get_by_label("Reason (the customer sees it)").fill("Outage on the 3rd")
    credit.get_by_role("button", name="Add credit").click()
    expect(page.get_by_role("status").first).to_have_text("Credit added.")
    expect(page.locator("#credit-balance")).to_have_text("$12.50")

    page.locator("#box-paid summary").click()
    paid = page.locator("#action-paid")
    paid.get_by_label("Invoice").select_option(label="TB-2026-000123 · Open · $59.00")
    paid.get_by_label("Paid by").select_option(label="bank transfer")
    paid.get_by_label("Reference").fill("8842-A")
    paid.get_by_role("button", name="Mark paid").click()
    expect(page.get_by_role("status").first).to_have_text("Invoice marked paid.")
    expect(page.locator(f"#invoice-{book['invoice']} .invoice-status")).to_have_text("Paid")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Marked an invoice paid: TB-2026-000123 ($59.00) by bank transfer, ref 8842-A")
    expect(timeline).to_contain_text("Added credit: $12.50: Outage on the 3rd")
    expect(timeline).to_contain_text("by staff@example.com")

    issue = page.locator("#reconciliation form")
    issue.get_by_label("Note").fill("Paid by bank transfer, not through Stripe")
    issue.get_by_role("button", name="Resolve").click()
    expect(page.locator("#reconciliation")).to_contain_text("Resolved by staff@example.com")
    page.goto(f"{live_server.url}/dashboard/")
    expect(page.locator("#open-issues")).to_contain_text("0 open drifts")
    context.close()

    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    _log_in(page, live_server, "ada@example.com", "/portal/")
    page.locator("#projected-lines summary").click()
    expect(page.locator("#projected-lines")).to_contain_text("Credit from your balance")
    page.goto(f"{live_server.url}/portal/billing/")
    expect(page.locator(".invoice-paid-by").first).to_contain_text("Marked paid: bank transfer, ref 8842-A")
    context.close()

    assert problems == [], "\n".join(problems)
