"""The pages and the API docs work in a real browser under the Content-Security-Policy."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from playwright.sync_api import expect

from tests.page_factories import seeded_public_plans

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).parent / "artifacts"


def test_pages_and_swagger_ui_run_without_a_single_csp_violation(live_server, browser):
    seeded_public_plans()
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)

    for path in ("/", "/signup/", "/login/"):
        response = page.goto(live_server.url + path)
        assert "script-src 'self'" in response.headers["content-security-policy"]
    page.goto(live_server.url + "/v1/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tollbooth API")
    expect(page.locator(".opblock").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "api-docs-under-csp.png"), full_page=False)

    assert violations == []
    connection.close()  # Playwright's loop gave the ORM a connection of its own: let the test database go
