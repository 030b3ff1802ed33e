"""A customer sets a spend cap and a webhook URL, sends a test event and finds it in the log."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from playwright.sync_api import expect

from notifications.tests.receiver import Receiver
from tests.page_factories import seeded_public_plans

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture
def owner_credentials(transactional_db):
    from tests.factories import CustomerFactory, UserFactory, seeded_plan

    seeded_public_plans()
    # A customer since last year, so this month's base fee is whole and the cap maths is round.
    CustomerFactory(owner=UserFactory(email="grace@example.com"), company="Hopper Systems", plan=seeded_plan("starter"),
                    created_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    return "grace@example.com", "correct horse battery staple"


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


def test_a_customer_sets_a_cap_and_a_webhook_and_sees_a_test_delivery(live_server, owner_credentials, receiver, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    email, password = owner_credentials
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.wait_for_url(re.compile(r"/portal/settings/$"))
    page.screenshot(path=str(ARTIFACTS / "settings.png"), full_page=True)

    page.get_by_label("Monthly spend cap (USD)").fill("-5")
    page.get_by_role("button", name="Save alert settings").click()
    expect(page.locator(".field-errors")).to_have_text("Enter an amount of $0 or more.")
    page.get_by_label("Monthly spend cap (USD)").fill("250")
    page.get_by_label("Hard stop").check()
    page.get_by_role("button", name="Save alert settings").click()
    expect(page.get_by_role("status")).to_contain_text("Alert settings saved")
    expect(page.get_by_label("Monthly spend cap (USD)")).to_have_value("250.00")
    expect(page.get_by_test_id("limits")).to_contain_text("spend cap at 251,004 (calls stop there)")

    page.get_by_label("Endpoint URL").fill(receiver.url)
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("#webhook-secret").inner_text().strip()
    assert re.fullmatch(r"whsec_[0-9a-f]{48}", secret)
    page.screenshot(path=str(ARTIFACTS / "settings-webhook.png"), full_page=True)

    page.get_by_role("button", name="Send test event").click()
    row = page.locator("tr.event-row").first
    expect(row.locator(".event-status")).to_have_text("Delivered")
    expect(row.locator(".event-response")).to_contain_text("HTTP 200")
    assert page.locator("#webhook-secret").count() == 0
    page.screenshot(path=str(ARTIFACTS / "settings-delivery-log.png"), full_page=True)

    [request] = receiver.received
    event_id = json.loads(request.body)["id"]
    assert row.get_attribute("data-event-id") == event_id
    from notifications.models import NotificationSettings
    from notifications.signing import signature_verify

    saved = NotificationSettings.objects.get(customer__owner__email=email)
    connection.close()  # Playwright's loop gave this ORM call a connection of its own
    assert (saved.spend_cap, saved.cap_mode) == (Decimal("250.00"), "stop")
    assert signature_verify(header=request.headers["Tollbooth-Signature"], body=request.body, secret=secret)
