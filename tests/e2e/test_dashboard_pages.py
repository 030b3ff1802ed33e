"""Staff and a customer open their dashboards in a real browser: every chart is drawn, fits a
phone's width, and the pages run under the Content-Security-Policy without a violation."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def accounts(transactional_db):
    """A small book, made before the browser starts (outside Playwright's loop)."""
    from django.utils import timezone

    from accounts.services import api_key_issue
    from billing.models import PlanChange
    from tests.factories import (
        CustomerFactory, InvoiceFactory, InvoiceLineFactory, PlanChangeFactory, UsageRecordFactory, UserFactory,
        seeded_plan,
    )
    from tests.page_factories import seeded_public_plans

    seeded_public_plans()
    now = timezone.now()
    starter, pro = seeded_plan("starter"), seeded_plan("pro")
    UserFactory(email="staff@example.com", is_staff=True)
    customer = CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Analytical Engines",
                               plan=pro, created_at=now - timedelta(days=200))
    PlanChangeFactory(customer=customer, from_plan=starter, to_plan=pro, at=now - timedelta(days=70))
    key = api_key_issue(customer=customer, name="Production").key
    for offset in range(90):
        for n, product in enumerate(("geocode", "text")):
            UsageRecordFactory(customer=customer, api_key=key, product=product,
                               day=(now - timedelta(days=offset)).date(), calls=1_000 + 37 * offset + 400 * n)
    for i in range(6):
        other = CustomerFactory(company=f"Customer {i}", plan=starter if i % 2 else pro,
                                created_at=now - timedelta(days=30 * i + 5))
        if i == 3:
            PlanChangeFactory(customer=other, from_plan=starter, to_plan=starter, at=now - timedelta(days=20),
                              reason=PlanChange.Reason.CANCELLED)
            other.status = "cancelled"
            other.save()
        UsageRecordFactory(customer=other, day=(now - timedelta(days=i)).date(), calls=5_000 * (i + 1))
    last = (now.replace(day=1) - timedelta(days=1))
    invoice = InvoiceFactory(customer=customer, period=f"{last:%Y-%m}", status="paid", total=Decimal("201.50"))
    InvoiceLineFactory(invoice=invoice, kind="overage", amount=Decimal("2.50"))


def _log_in(browser, live_server, email: str, path: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto(f"{live_server.url}/login/?next={path}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(re.escape(path) + "$"))
    return page, violations


def _charts_are_drawn(page, count: int) -> None:
    charts = page.locator("svg.chart")
    assert charts.count() == count
    for i in range(count):
        chart = charts.nth(i)
        assert chart.locator("title").first.text_content().strip()
        marks = chart.locator("rect, polyline, circle").count()
        box = chart.bounding_box()
        assert marks > 0 and box["width"] > 100 and box["height"] > 30, (i, marks, box)


def _fits_a_phone(page, name: str) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    widths = page.locator("svg.chart").evaluate_all("els => els.map(e => e.getBoundingClientRect().right)")
    assert max(widths) <= 375
    page.screenshot(path=str(ARTIFACTS / f"{name}-narrow.png"), full_page=True)


def test_staff_see_the_revenue_dashboard_with_every_chart(live_server, accounts, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page, violations = _log_in(browser, live_server, "staff@example.com", "/dashboard/")

    # Pro ($199) for Analytical Engines and Customers 0, 2, 4; Starter ($49) for 1 and 5; 3 cancelled.
    assert page.locator("#mrr").inner_text() == "$894"
    _charts_are_drawn(page, 5)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    _fits_a_phone(page, "dashboard")
    page.goto(live_server.url + "/portal/")
    assert "No customer account here" in page.content()
    assert violations == []
    page.close()


def test_a_customer_sees_its_usage_and_projection_but_not_the_dashboard(live_server, accounts, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page, violations = _log_in(browser, live_server, "ada@example.com", "/portal/")

    assert page.locator("#calls").inner_text() != "0"
    # A projection needs a whole day of billable use this period: on the 1st it says so instead.
    projected = page.locator("#projected-total").inner_text()
    assert projected.startswith("$") or (timezone.now().day == 1 and projected == "not enough data yet")
    assert page.locator("#per-key").get_by_text("Production").count() == 1
    _charts_are_drawn(page, 2)
    page.screenshot(path=str(ARTIFACTS / "portal-usage.png"), full_page=True)
    _fits_a_phone(page, "portal-usage")
    assert page.goto(live_server.url + "/dashboard/").status == 404
    assert violations == []
    page.close()
