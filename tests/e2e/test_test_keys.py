"""Test-mode keys in the portal (README "The metered API", test mode): create one, call the API
with it, and find the call apart in the overview; at 1280 and 390 px, axe finds no serious or
critical violation."""
from __future__ import annotations

import json
import re
import urllib.request
from datetime import datetime, timezone

import pytest
from playwright.sync_api import expect

from tests.page_factories import seeded_public_plans

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
WIDTHS = {"desktop": 1280, "phone": 390}


@pytest.fixture
def owner(transactional_db):
    from tests.factories import CustomerFactory, UserFactory, seeded_plan

    seeded_public_plans()
    CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Lovelace Labs", plan=seeded_plan("starter"),
                    created_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    return "ada@example.com"


def _serious(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    return [f"{v['id']} ({v['impact']})" for v in Axe().run(page).response["violations"]
            if v["impact"] in ("serious", "critical")]


def _call(url: str, raw: str) -> tuple[int, str, dict]:
    request = urllib.request.Request(url + "/v1/geocode?q=Lyon", headers={"Authorization": f"Bearer {raw}"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, response.headers["Tollbooth-Mode"], json.loads(response.read())


@pytest.mark.parametrize("width", WIDTHS.values(), ids=WIDTHS.keys())
def test_a_customer_creates_a_test_key_and_sees_its_calls_apart(live_server, owner, browser, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email").fill(owner)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/portal/$"))
    page.goto(live_server.url + "/portal/keys/")
    page.get_by_label("Name").fill("CI")
    page.locator("input[name=mode][value=test]").check()
    page.get_by_role("button", name="Create key").click()
    raw = page.locator("#new-key").inner_text().strip()
    assert re.fullmatch(r"sk_test_[0-9a-f]{64}", raw)
    expect(page.locator(".key-row", has_text="CI").locator(".key-test-badge")).to_have_text("Test mode")
    assert _serious(page) == []

    status, mode, _ = _call(live_server.url, raw)
    assert (status, mode) == (200, "test")
    page.goto(live_server.url + "/portal/")
    block = page.locator("#test-usage")
    expect(block.get_by_role("row", name=re.compile("Geocoding"))).to_contain_text("1")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert _serious(page) == []
    page.close()
