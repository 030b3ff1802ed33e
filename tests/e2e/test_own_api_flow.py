"""Selling your own API, end to end: staff add a product in the admin and put it on Starter, a
Starter customer calls it through the gateway, the portal shows the calls by product and the
invoice bills them. The upstream is a real process on loopback (tests/upstream_server.py) that
answers /api/verify only when the Tollbooth-Signature checks out with the secret staff copied."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"


@contextmanager
def upstream(port: int, secret: str):
    """tests/upstream_server.py on `port`, configured with the product's signing secret."""
    from tests.servers import _wait_for_port, stop

    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "upstream_server.py"), str(port), secret],
                               cwd=ROOT, start_new_session=True)
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def get(url: str, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture
def staff(transactional_db):
    from tests.factories import UserFactory
    from tests.page_factories import seeded_public_plans

    seeded_public_plans()
    UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    connection.close()  # opened outside Playwright's loop: let the test database be dropped later


@pytest.fixture
def starter_customer(transactional_db):
    """On Starter since before the product existed, with a key."""
    from accounts.services import api_key_issue
    from tests.factories import CustomerFactory, UserFactory, seeded_plan

    customer = CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Analytical Engines",
                               plan=seeded_plan("starter"))
    raw = api_key_issue(customer=customer, name="Production").raw
    connection.close()
    return customer, raw


def _log_in(browser, live_server, email: str, path: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/login/?next={path}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(re.escape(path) + "$"))
    return page


def test_staff_sell_an_upstream_on_starter_and_its_calls_reach_the_portal_and_the_invoice(
        live_server, staff, starter_customer, browser):
    from tests.servers import free_port

    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    port = free_port()  # where the company's service will listen once it has its secret

    # Staff add the product; the page after saving shows its token and signing secret once.
    page = _log_in(browser, live_server, "staff@example.com", "/admin/plans/product/add/")
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.locator("#id_name").press_sequentially("Routing API")
    expect(page.locator("#id_slug")).to_have_value("routing-api")  # prepopulated from the name
    page.locator("#id_description").fill("Routes between two points.")
    page.locator("#id_upstream_url").fill(f"http://127.0.0.1:{port}/api")
    page.locator("#id_methods").fill("GET,POST")
    page.locator("#id_timeout_seconds").fill("10")
    page.locator("#id_health_path").fill("/echo")
    page.locator("input[name=_save]").click()
    expect(page.locator(".service-token")).to_have_text(re.compile(r"^tbs_[0-9a-f]{48}$"))
    secret = page.locator(".signing-secret").inner_text().strip()
    assert re.fullmatch(r"whsec_[0-9a-f]{64}", secret), secret
    page.screenshot(path=str(ARTIFACTS / "own-api-secrets.png"), full_page=True)

    with upstream(port, secret) as upstream_url:
        # "Check upstream" reaches the service staff just configured.
        page.goto(f"{live_server.url}/admin/plans/product/")
        row = page.locator("#result_list tr", has_text="Routing API")
        row.locator("input[name=_selected_action]").check()
        page.locator("select[name=action]").select_option(label="Check upstream (one GET to its health path)")
        page.locator("button[name=index]").click()
        expect(page.locator(".messagelist")).to_contain_text(
            re.compile(rf"Routing API: HTTP 200 in \d+ ms from {re.escape(upstream_url)}/api/echo"))

        # Staff put it on Starter (the plan page's product chooser).
        page.goto(f"{live_server.url}/admin/plans/plan/")
        page.get_by_role("link", name="Starter", exact=True).click()
        page.locator("#id_products_from").select_option(label="Routing API")
        page.locator("#id_products_add").click()
        expect(page.locator("#id_products_to option", has_text="Routing API")).to_have_count(1)
        page.locator("input[name=_save]").click()
        expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
        # Customers already on Starter hold terms snapshots: they take the product at once.
        expect(page.locator(".messagelist")).to_contain_text("1 customer(s) of Starter can call Routing API now.")
        page.close()

        customer, raw = starter_customer
        headers = {"X-API-Key": raw, "Cookie": "sessionid=kept-from-the-upstream"}
        gateway = f"{live_server.url}/v1/routing-api"
        answers = [get(f"{gateway}/verify?from=paris&to=lyon", headers) for _ in range(3)]
        assert answers == [(200, {"valid": True})] * 3  # the upstream checked every signature
        status, echo = get(f"{gateway}/echo", headers)
        assert status == 200 and echo["signature_valid"] is True
        sent = {name.lower(): value for name, value in echo["headers"]}
        assert "x-api-key" not in sent and "cookie" not in sent
        assert sent["tollbooth-customer"] == str(customer.pk) and sent["tollbooth-plan"].lower() == "starter"
        assert get(f"{gateway}/status/404", headers)[0] == 404  # passed back, not billed
        # The upstream saw exactly these calls, and nothing outside its base URL.
        stats = get(f"{upstream_url}/_stats", {})[1]
        assert stats.get("verify") == 3 and stats.get("status") == 1
        assert stats.get("echo") == 2  # the check and the customer's call
        assert "outside" not in stats

    # The customer's portal lists the product's calls this period: 4 billed, the 404 not.
    page = _log_in(browser, live_server, customer.owner.email, "/portal/")
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    products = page.locator("#period-products")
    expect(products.locator("tr", has_text="Routing API").locator("td.num")).to_have_text("4")
    page.screenshot(path=str(ARTIFACTS / "own-api-portal.png"), full_page=True)
    page.close()

    assert _invoice_calls(customer) == 4
    assert errors == []


def _invoice_calls(customer) -> int:
    """The month's invoice, as the month close would write it, after the usage flush."""
    from billing.invoicing import invoice_generate
    from core.periods import period_of
    from metering.models import UsageRecord
    from metering.services import usage_flush

    usage_flush()
    assert sum(UsageRecord.objects.filter(customer=customer, product="routing-api").values_list("calls", flat=True)) == 4
    invoice = invoice_generate(customer=customer, period=period_of(timezone.now()))
    calls = invoice.calls
    connection.close()
    return calls
