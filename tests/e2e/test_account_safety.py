"""Account safety in a real browser, at a desktop and a phone width, axe-core on every page on
the way: an email change confirmed through the link mailed to the new address, and a
cancellation at the period's end that the customer then takes back."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection

from .helpers import ARTIFACTS, PASSWORD, WIDTHS, context_new, log_in, overflowing, serious

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def owners(transactional_db):
    """One customer per width (each test changes its account for good), made before the browser starts."""
    from django.utils import timezone

    from tests.factories import CustomerFactory, UserFactory, seeded_plan
    from tests.page_factories import seeded_public_plans

    seeded_public_plans()
    created = timezone.now() - timedelta(days=40)
    for name in WIDTHS:
        CustomerFactory(owner=UserFactory(email=f"ada-{name}@example.com"), company="Analytical Engines",
                        plan=seeded_plan("starter"), created_at=created)
    connection.close()


def _page_checked(page, where: str) -> list[str]:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / f"account-safety-{re.sub(r'[^a-z0-9]+', '-', where.lower())}.png"),
                    full_page=True)
    problems = [f"{where}: {v}" for v in serious(page, where)]
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner:
        problems.append(f"{where}: scrolls sideways ({scroll}px > {inner}px), widest: {overflowing(page)}")
    return problems


def test_an_email_change_waits_for_the_link_sent_to_the_new_address(browser, live_server, owners):
    problems: list[str] = []
    for name, width in WIDTHS.items():
        old, new = f"ada-{name}@example.com", f"ada-{name}-new@example.com"
        context = context_new(browser, width)
        page = context.new_page()
        log_in(page, live_server, old)
        page.goto(f"{live_server.url}/portal/account/")
        problems += _page_checked(page, f"account {name}")
        page.get_by_label("New email").fill(new)
        page.locator("#email-form").get_by_label("Current password").fill(PASSWORD)
        page.locator("#email-form").get_by_role("button", name="Change email").click()
        page.wait_for_url(re.compile(r"/portal/account/$"))
        assert f"We sent a link to {new}" in page.content()
        assert page.locator("#account-email").inner_text() == old

        [confirm] = [m for m in mail.outbox if m.to == [new]]
        assert [m.subject for m in mail.outbox if m.to == [old]] == ["A change of your Tollbooth email was requested"]
        link = re.search(r"(/email/confirm/[^/\s]+/)", confirm.body).group(1)
        page.goto(live_server.url + link)
        problems += _page_checked(page, f"email confirm {name}")
        page.get_by_role("button", name="Confirm new email").click()
        page.wait_for_url(re.compile(r"/portal/account/$"))
        assert page.locator("#account-email").inner_text() == new
        assert f"Your email is now {new}." in page.content()
        assert "Your Tollbooth email was changed" in [m.subject for m in mail.outbox if m.to == [old]]

        page.goto(live_server.url + link)  # the same link again: used up
        assert page.locator("#email-change-error").get_attribute("data-code") == "used"
        problems += _page_checked(page, f"email link used {name}")
        context.close()
    assert problems == []


def test_cancelling_defaults_to_the_period_end_and_can_be_taken_back(browser, live_server, owners):
    problems: list[str] = []
    for name, width in WIDTHS.items():
        context = context_new(browser, width)
        page = context.new_page()
        log_in(page, live_server, f"ada-{name}@example.com")
        page.goto(f"{live_server.url}/portal/billing/cancel/")
        problems += _page_checked(page, f"cancel {name}")
        assert page.get_by_label(re.compile("At the end of this month")).is_checked()
        assert not page.locator("#when-now").is_checked()
        page.get_by_role("button", name="Cancel subscription").click()
        page.wait_for_url(re.compile(r"/portal/billing/$"))
        assert "Your subscription ends after" in page.locator("#scheduled-end").inner_text()
        assert page.locator("#billing-status").inner_text() == "Active"
        problems += _page_checked(page, f"billing with an end scheduled {name}")

        page.get_by_role("link", name="Keep my subscription").click()
        page.wait_for_url(re.compile(r"/portal/billing/cancel/$"))
        problems += _page_checked(page, f"cancel scheduled {name}")
        page.get_by_role("button", name="Keep my subscription").click()
        page.wait_for_url(re.compile(r"/portal/billing/$"))
        assert page.locator("#scheduled-end").count() == 0
        assert "Your subscription continues" in page.content()
        context.close()
    assert problems == []
