"""A customer on a paid plan removes the card on file (README "Customer portal"), at a desktop and
a phone width: the remove page says what happens, the card is gone, and the billing page says the
plan ends at the period's end; the invoice list fits a phone without scrolling sideways, and
axe-core finds no serious or critical violation on any page on the way."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from tests.e2e.helpers import ARTIFACTS, context_new, log_in, page_problems

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_outside_task")]

# The invoice list's card, wider than its box when it scrolls inside itself.
INVOICES_OVERFLOW = "(() => { const e = document.querySelector('#invoices'); return e.scrollWidth - e.clientWidth; })()"


@pytest.fixture
def carded(transactional_db, stripe_server):
    """On Starter for two months, two paid invoices, a card saved through the embedded Stripe.
    Made before the browser starts (outside Playwright's event loop). Returns the period's last day
    as the pages write it."""
    from django.utils import timezone

    from tests.factories import CustomerFactory, InvoiceFactory, InvoiceLineFactory, UserFactory, seeded_plan
    from tests.page_factories import seeded_public_plans
    from tests.payments import card_on_file

    seeded_public_plans()
    now = timezone.now()
    customer = CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Analytical Engines",
                               plan=seeded_plan("starter"), created_at=now - timedelta(days=70))
    card_on_file(customer)
    last = now.replace(day=1) - timedelta(days=1)
    for months_ago, day in enumerate((last, last.replace(day=1) - timedelta(days=1))):
        invoice = InvoiceFactory(customer=customer, period=f"{day:%Y-%m}", status="paid", total=Decimal("1049.00"),
                                 subtotal=Decimal("1049.00"), issued_at=day + timedelta(days=1),
                                 paid_at=day + timedelta(days=1), paid_by="Visa ••4242",
                                 number=f"TB-{day:%Y}-00012{months_ago}")
        InvoiceLineFactory(invoice=invoice, kind="base", amount=Decimal("1049.00"))
    period_end = (now.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    connection.close()
    return f"{period_end.day} {period_end:%B %Y}"


@pytest.mark.parametrize("width", [1280, 390])
def test_removing_the_card_on_a_paid_plan_ends_it_at_the_period_end(live_server, carded, browser, width):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    context = context_new(browser, width)
    page = context.new_page()
    log_in(page, live_server, "ada@example.com")

    page.goto(f"{live_server.url}/portal/billing/")
    expect(page.locator("#card-on-file")).to_have_text("Visa •••• 4242")
    expect(page.locator("tr.invoice-row")).to_have_count(2)
    problems += page_problems(page, "/portal/billing/", f"billing at {width}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate(INVOICES_OVERFLOW) <= 0, "the invoice list scrolls inside its card"
    page.screenshot(path=str(ARTIFACTS / f"card-remove-billing-{width}.png"), full_page=True)

    page.get_by_role("link", name="Remove card").click()
    page.wait_for_url(re.compile(r"/portal/billing/card/remove/$"))
    expect(page.locator("#card-remove-effect")).to_contain_text(
        f"The Starter plan needs a card: after {carded} you move to the Free plan.")
    problems += page_problems(page, "/portal/billing/card/remove/", f"remove card at {width}")
    page.screenshot(path=str(ARTIFACTS / f"card-remove-confirm-{width}.png"), full_page=True)

    page.locator("#card-remove-form").get_by_role("button", name="Remove card").click()
    page.wait_for_url(re.compile(r"/portal/billing/$"))
    expect(page.locator(".messages").get_by_role("status")).to_have_text(
        f"Card removed: Visa ending in 4242. Starter needs a card: you move to the Free plan after {carded}.")
    expect(page.locator("#card-on-file")).to_have_text("None")
    expect(page.locator("#current-plan")).to_have_text("Starter")  # until the period's end
    expect(page.locator("#scheduled-end")).to_contain_text(f"You move to the Free plan after {carded}")
    problems += page_problems(page, "/portal/billing/", f"billing after removal at {width}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(ARTIFACTS / f"card-remove-done-{width}.png"), full_page=True)

    assert problems == [], "\n".join(problems)
    context.close()
