"""Every page, public, portal and staff, in a real browser at a desktop and a phone width: a
screenshot of each, nothing scrolls sideways, the phone menu opens, and axe-core finds no serious
or critical accessibility violation."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from tests.e2e.helpers import ARTIFACTS, PASSWORD, WIDTHS, context_new, log_in, page_problems

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PUBLIC = ["/", "/signup/", "/login/", "/password-reset/", "/v1/docs/"]
PORTAL = ["/", "/portal/", "/portal/keys/", "/portal/billing/", "{invoice}", "/portal/settings/", "/portal/account/",
          "/portal/account/delete/", "/portal/billing/plan/", "/portal/team/"]
STAFF = ["/dashboard/", "/admin/"]


@pytest.fixture
def book(transactional_db):
    """A customer with keys in every state, usage and a paid invoice; a staff member. Made
    before the browser starts (outside Playwright's event loop)."""
    from django.utils import timezone

    from accounts.services import api_key_issue, api_key_revoke, api_key_rotate
    from tests.factories import CustomerFactory, InvoiceFactory, InvoiceLineFactory, UsageRecordFactory, UserFactory, seeded_plan
    from tests.page_factories import seeded_public_plans

    seeded_public_plans()
    now = timezone.now()
    UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    customer = CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Analytical Engines",
                               plan=seeded_plan("pro"), status="trial", trial_ends_at=now + timedelta(days=9),
                               created_at=now - timedelta(days=40))
    production = api_key_issue(customer=customer, name="Production with a rather long name").key
    api_key_rotate(key=api_key_issue(customer=customer, name="Staging").key, grace_days=3)
    api_key_revoke(key=api_key_issue(customer=customer, name="Laptop").key)
    for offset in range(35):
        UsageRecordFactory(customer=customer, api_key=production, day=(now - timedelta(days=offset)).date(), calls=20 + offset)
    last = now.replace(day=1) - timedelta(days=1)
    invoice = InvoiceFactory(customer=customer, period=f"{last:%Y-%m}", status="paid", total=Decimal("0.00"),
                             issued_at=last)
    InvoiceLineFactory(invoice=invoice, kind="base", amount=Decimal("0.00"))
    connection.close()
    return {"invoice": f"/portal/billing/invoices/{invoice.pk}/"}


def _check(page, live_server, path: str, name: str, role: str, problems: list[str]) -> None:
    response = page.goto(live_server.url + path)
    page.wait_for_load_state("networkidle")
    where = f"{path} at {name}"
    if response is None or response.status != 200:
        problems.append(f"{where}: status {response and response.status}")
    slug = re.sub(r"\d+", "n", path.strip("/").replace("/", "-")) or "home"
    page.screenshot(path=str(ARTIFACTS / f"page-{role}-{slug}-{name}.png"), full_page=True)
    problems.extend(page_problems(page, path, where))


def _visit(browser, live_server, paths: list[str], email: str | None, role: str) -> list[str]:
    problems: list[str] = []
    for name, width in WIDTHS.items():
        context = context_new(browser, width)
        page = context.new_page()
        if email:
            log_in(page, live_server, email)
        for path in paths:
            _check(page, live_server, path, name, role, problems)
        context.close()
    return problems


def test_every_public_page_fits_a_phone_and_passes_axe(live_server, book, browser):
    ARTIFACTS.mkdir(exist_ok=True)

    problems = _visit(browser, live_server, PUBLIC, None, "public")
    assert problems == [], "\n".join(problems)


def test_every_portal_page_fits_a_phone_and_passes_axe(live_server, book, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    paths = [path.format(**book) for path in PORTAL]

    problems = _visit(browser, live_server, paths, "ada@example.com", "customer")
    assert problems == [], "\n".join(problems)


def test_every_staff_page_fits_a_phone_and_passes_axe(live_server, book, browser):
    ARTIFACTS.mkdir(exist_ok=True)

    problems = _visit(browser, live_server, STAFF, "staff@example.com", "staff")
    assert problems == [], "\n".join(problems)


def test_the_phone_menu_opens_without_script_and_the_trial_banner_shows(live_server, book, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 800}, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/portal/$"))

    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="API keys")).to_be_hidden()
    page.locator("label[for=nav-toggle]").click()
    expect(nav.get_by_role("link", name="API keys")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "phone-menu-open.png"))
    expect(page.locator("#trial-banner")).to_contain_text("Add a card to stay on Professional; without one you move to the Free plan.")
    nav.get_by_role("link", name="API keys").click()
    page.wait_for_url(re.compile(r"/portal/keys/$"))
    expect(page.locator("#revoked-keys")).not_to_have_attribute("open", "")
    expect(page.get_by_text("Replaced — expires")).to_be_visible()
    context.close()
