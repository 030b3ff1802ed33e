"""A customer signs up, saves a card through the card Element, upgrades, and reads an invoice."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

from tests.page_factories import STRONG_PASSWORD, seeded_public_plans
from tests.payments import TEST_CARD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_outside_task")]

ARTIFACTS = Path(__file__).parent / "artifacts"


def fill_card(page, number: str) -> None:
    """The card Element's fields (localstripe's mock Element; real Stripe puts them in an iframe)."""
    element = page.locator("#card-element")
    element.get_by_placeholder("number").fill(number)
    element.get_by_placeholder("exp_month").fill("12")
    element.get_by_placeholder("exp_year").fill("31")
    element.get_by_placeholder("cvc").fill("123")
    element.get_by_placeholder("postal_code").fill("75001")


def month_invoice_issue(email: str) -> None:
    """Staff close the month early for this customer (what the 1st-of-month beat does for all)."""
    from accounts.models import Customer
    from core.periods import period_of
    from billing.invoicing import invoice_generate, invoice_issue

    customer = Customer.objects.get(owner__email=email)
    invoice_issue(invoice=invoice_generate(customer=customer, period=period_of(timezone.now())))
    connection.close()  # opened under Playwright's loop: let the test database be dropped later


def test_signup_save_a_card_upgrade_and_open_the_paid_invoice(live_server, stripe_webhooks, browser):
    seeded_public_plans()
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(live_server.url + "/signup/?plan=free")
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("Company").fill("Hopper Compilers")
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(re.compile(r"/signup/welcome/$"))

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    page.wait_for_url(re.compile(r"/portal/billing/$"))
    expect(page.locator("#current-plan")).to_have_text("Free")
    expect(page.locator("#card-on-file")).to_have_text("None")
    page.get_by_role("link", name="Add a card").click()
    page.wait_for_url(re.compile(r"/portal/billing/card/$"))

    fill_card(page, "4000000000000002")  # refused when it is saved: an error, nothing recorded
    page.get_by_role("button", name="Save card").click()
    expect(page.locator("#card-errors")).to_have_text("Your card was declined.")
    page.screenshot(path=str(ARTIFACTS / "billing-card-declined.png"), full_page=True)

    page.reload()
    fill_card(page, TEST_CARD)
    page.screenshot(path=str(ARTIFACTS / "billing-card.png"), full_page=True)
    page.get_by_role("button", name="Save card").click()
    page.wait_for_url(re.compile(r"/portal/billing/$"))
    expect(page.get_by_role("status")).to_contain_text("Card saved: Visa ending in 4242.")
    expect(page.locator("#card-on-file")).to_have_text("Visa •••• 4242")

    page.get_by_role("link", name="Change plan").click()
    page.get_by_label("Starter").check()
    page.get_by_role("button", name="Review change").click()
    expect(page.get_by_role("heading", name="Switch to Starter?")).to_be_visible()
    expect(page.locator("#proration")).to_contain_text("prorated by day")
    page.screenshot(path=str(ARTIFACTS / "billing-plan-confirm.png"), full_page=True)
    page.get_by_role("button", name="Confirm change").click()
    page.wait_for_url(re.compile(r"/portal/billing/$"))
    expect(page.locator("#current-plan")).to_have_text("Starter")

    month_invoice_issue("grace@example.com")  # issued, then charged to the saved card

    page.reload()
    page.screenshot(path=str(ARTIFACTS / "billing.png"), full_page=True)
    row = page.locator("tr.invoice-row").first
    expect(row).to_contain_text("Paid")
    row.get_by_role("link", name=re.compile(r"^TB-")).click()  # the number; the row's other link is its PDF
    page.wait_for_url(re.compile(r"/portal/billing/invoices/\d+/$"))
    expect(page.locator("#invoice-status")).to_have_text("Paid")
    expect(page.locator("tr.invoice-line", has_text="Starter")).to_have_count(1)
    expect(page.locator("tr.attempt-row")).to_contain_text("Succeeded")
    page.screenshot(path=str(ARTIFACTS / "invoice.png"), full_page=True)
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "invoice-print.png"), full_page=True)
    assert errors == []
