"""The dashboard, the pricing page and the API docs read right in a real browser at 1280 and
390 px: chart labels stay readable on a phone (larger, half the x labels), a loss prints
"−$150", the Free card lists its alerts and webhooks, the docs keep the portal's header, and
axe-core finds no serious or critical violation."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.e2e.helpers import ARTIFACTS, WIDTHS, context_new, log_in, serious, sideways

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]



@pytest.fixture
def accounts(transactional_db):
    """Staff, and a customer that moved from Pro to Starter this month: a −$150 contraction."""
    from django.utils import timezone

    from tests.factories import CustomerFactory, PlanChangeFactory, UsageRecordFactory, UserFactory, seeded_plan
    from tests.page_factories import seeded_public_plans

    seeded_public_plans()
    now = timezone.now()
    starter, pro = seeded_plan("starter"), seeded_plan("pro")
    UserFactory(email="staff@example.com", is_staff=True)
    customer = CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Analytical Engines",
                               plan=pro, created_at=now - timedelta(days=200))
    PlanChangeFactory(customer=customer, from_plan=pro, to_plan=starter, at=now - timedelta(seconds=5))
    customer.plan = starter
    customer.save()
    for offset in range(40):
        UsageRecordFactory(customer=customer, day=(now - timedelta(days=offset)).date(), calls=3 + offset % 4)


def _open(page, live_server, path: str, name: str) -> None:
    response = page.goto(live_server.url + path)
    page.wait_for_load_state("networkidle")
    assert response is not None and response.status == 200, path
    assert sideways(page) is None, f"{path} at {name}: {sideways(page)}"
    slug = path.strip("/").replace("/", "-") or "home"
    page.screenshot(path=str(ARTIFACTS / f"reading-{slug}-{name}.png"), full_page=True)


# Each shown tick label's drawn height (its font size on screen) and whether x-minor ones show.
TICKS = """() => [...document.querySelectorAll('svg.chart text.tick')]
  .filter(t => getComputedStyle(t).display !== 'none')
  .map(t => [t.classList.contains('x-minor'), t.getBoundingClientRect().height])"""


@pytest.mark.parametrize("name", list(WIDTHS))
def test_the_staff_dashboard_reads_at_desktop_and_phone_widths(live_server, accounts, browser, name):
    ARTIFACTS.mkdir(exist_ok=True)
    context = context_new(browser, WIDTHS[name])
    page = context.new_page()
    log_in(page, live_server, "staff@example.com")
    _open(page, live_server, "/dashboard/", name)

    ticks = page.evaluate(TICKS)
    assert ticks and min(height for _, height in ticks) >= 10, ticks  # about 11px text or more, never 6px
    assert any(minor for minor, _ in ticks) is (name == "desktop")  # a phone drops every other x label
    text = page.locator("main").inner_text()
    assert "$-" not in text
    assert page.locator("#movements td.mv-contraction").filter(has_text="−$150").count() == 1
    assert serious(page, "/dashboard/") == []
    context.close()


@pytest.mark.parametrize("name", list(WIDTHS))
def test_pricing_and_the_signed_in_api_docs_read_at_desktop_and_phone_widths(live_server, accounts, browser, name):
    ARTIFACTS.mkdir(exist_ok=True)
    context = context_new(browser, WIDTHS[name])
    page = context.new_page()
    _open(page, live_server, "/", name)
    free = page.locator('[data-plan="free"] .plan-features')
    assert "Webhooks for usage, invoices and payments, signed" in free.inner_text()
    assert "Usage alerts by email" in free.inner_text() and "spend cap" not in free.inner_text()
    problems = [f"/: {v}" for v in serious(page, "/")]

    log_in(page, live_server, "ada@example.com")
    _open(page, live_server, "/v1/docs/", name)
    back = page.get_by_role("link", name="← Back to the portal")
    assert back.is_visible()
    problems += [f"/v1/docs/: {v}" for v in serious(page, "/v1/docs/")]
    back.click()
    page.wait_for_url(re.compile(r"/portal/$"))
    assert problems == []
    context.close()
