"""A visitor picks a plan, signs up, sees the key once, then revokes it in the portal."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.db import connection
from playwright.sync_api import expect

from accounts.models import ApiKey
from tests.page_factories import STRONG_PASSWORD, seeded_public_plans

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).parent / "artifacts"
LIVE_KEY = re.compile(r"^sk_live_[0-9a-f]{64}$")
ANY_KEY = re.compile(r"sk_(?:live|test)_[0-9a-f]{64}")


@pytest.fixture(autouse=True)
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)


def test_signup_shows_the_key_once_and_the_portal_can_revoke_it(live_server, browser):
    seeded_public_plans()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)

    page.goto(live_server.url + "/")
    page.screenshot(path=str(ARTIFACTS / "pricing.png"), full_page=True)
    page.locator('[data-plan="starter"]').get_by_role("link", name="Start 14-day trial").click()

    page.wait_for_url(re.compile(r"/signup/\?plan=starter$"))
    assert page.get_by_label("Starter").is_checked()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Company").fill("Analytical Engines Ltd")
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.screenshot(path=str(ARTIFACTS / "signup.png"), full_page=True)
    page.get_by_role("button", name="Create account").click()

    page.wait_for_url(re.compile(r"/signup/welcome/$"))
    raw = page.locator("#new-key").inner_text().strip()
    assert LIVE_KEY.match(raw)
    assert page.locator("#new-key").count() == 1
    assert raw in page.locator("#curl-example").inner_text()
    page.screenshot(path=str(ARTIFACTS / "welcome.png"), full_page=True)
    page.reload()
    assert raw not in page.content() and not ANY_KEY.search(page.content())

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.wait_for_url(re.compile(r"/portal/keys/$"))
    row = page.locator("tr.key-row", has_text="Default key")
    assert row.locator(".key-masked").inner_text() == f"sk_live_…{raw[-8:]}"
    assert raw not in page.content() and not ANY_KEY.search(page.content())
    assert row.locator(".key-status").inner_text().strip() == "Active"
    page.screenshot(path=str(ARTIFACTS / "keys.png"), full_page=True)

    row.get_by_role("link", name="Revoke").click()
    page.screenshot(path=str(ARTIFACTS / "revoke.png"), full_page=True)
    page.get_by_role("button", name="Revoke key").click()

    page.wait_for_url(re.compile(r"/portal/keys/$"))
    page.locator("#revoked-keys summary").click()  # revoked keys sit behind a toggle
    row = page.locator("tr.key-row", has_text="Default key")
    assert row.locator(".key-status").inner_text().strip().startswith("Revoked")
    page.screenshot(path=str(ARTIFACTS / "keys-revoked.png"), full_page=True)
    page.get_by_role("link", name="Overview").click()
    page.screenshot(path=str(ARTIFACTS / "portal.png"), full_page=True)
    revoked_at = ApiKey.objects.get(last8=raw[-8:]).revoked_at
    # Under Playwright this ORM call got a connection of its own (another context);
    # close it, or the test database cannot be dropped at the end of the run.
    connection.close()
    assert revoked_at is not None


@pytest.fixture
def owner_credentials(transactional_db):
    """A signed-up customer, made before the browser starts (outside Playwright's loop)."""
    from tests.factories import CustomerFactory, UserFactory

    seeded_public_plans()
    CustomerFactory(owner=UserFactory(email="lin@example.com"), company="Lin & Co")
    return "lin@example.com", "correct horse battery staple"


def test_a_customer_creates_copies_and_rotates_a_key(live_server, owner_credentials, browser):
    email, password = owner_credentials
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)

    page.goto(live_server.url + "/login/?next=/portal/keys/")
    page.get_by_label("Email").fill(email.upper())
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/portal/keys/$"))

    page.get_by_placeholder("e.g. Production server").fill("Production")
    page.get_by_role("button", name="Create key").click()
    raw = page.locator("#new-key").inner_text().strip()
    assert LIVE_KEY.match(raw)
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()  # set once the copy resolved
    assert page.evaluate("navigator.clipboard.readText()") == raw
    page.screenshot(path=str(ARTIFACTS / "keys-new.png"), full_page=True)

    page.locator("tr.key-row", has_text="Production").get_by_role("link", name="Rotate").click()
    page.get_by_label("Grace period").select_option("2")
    page.get_by_role("button", name="Rotate key").click()

    page.wait_for_url(re.compile(r"/portal/keys/$"))
    rotated = page.locator("#new-key").inner_text().strip()
    assert LIVE_KEY.match(rotated) and rotated != raw
    statuses = page.locator("tr.key-row .key-status").all_inner_texts()
    assert [s.split()[0] for s in statuses] == ["Active", "Replaced"]
    page.reload()
    assert not ANY_KEY.search(page.content())
    context.close()
