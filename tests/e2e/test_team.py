"""Teams in a real browser, at a desktop and a phone width, axe-core on every page on the way: an
owner invites a developer, who follows the emailed link, creates a login, sees the keys but not
billing (403), and is out of the account on their next page once the owner removes them."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection

from tests.e2e.helpers import ARTIFACTS, WIDTHS, context_new, log_in, page_problems

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

INVITEE_PASSWORD = "a long and unguessable one"


@pytest.fixture
def owners(transactional_db):
    """One account per width, made before the browser starts (outside Playwright's event loop)."""
    from django.utils import timezone

    from tests.factories import CustomerFactory, UserFactory, seeded_plan
    from tests.page_factories import seeded_public_plans

    seeded_public_plans()
    for name in WIDTHS:
        CustomerFactory(owner=UserFactory(email=f"ada-{name}@example.com"), company="Analytical Engines",
                        plan=seeded_plan("starter"), created_at=timezone.now() - timedelta(days=40))
    connection.close()


def _page_checked(page, where: str) -> list[str]:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / f"team-{re.sub(r'[^a-z0-9]+', '-', where.lower())}.png"), full_page=True)
    return page_problems(page, where, where)


def _nav_has(page, href: str) -> bool:
    return page.locator(f'#main-nav a[href="{href}"]').count() == 1


def test_an_owner_invites_a_developer_who_joins_sees_only_their_pages_and_is_removed(browser, live_server, owners):
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    for name, width in WIDTHS.items():
        invitee = f"grace-{name}@example.com"
        owner_context, invitee_context = context_new(browser, width), context_new(browser, width)
        owner = owner_context.new_page()
        log_in(owner, live_server, f"ada-{name}@example.com")
        owner.goto(f"{live_server.url}/portal/team/")
        problems += _page_checked(owner, f"team {name}")

        form = owner.locator("#invite-form")
        form.get_by_label("Email").fill(invitee)
        form.get_by_label("Role", exact=True).select_option("developer")
        form.get_by_role("button", name="Send invitation").click()
        owner.wait_for_url(re.compile(r"/portal/team/$"))
        assert f"Invitation sent to {invitee} as Developer." in owner.content()
        assert owner.locator(f'.invitation-row[data-email="{invitee}"]').count() == 1
        problems += _page_checked(owner, f"team with an invitation {name}")

        [message] = [m for m in mail.outbox if m.to == [invitee]]
        link = re.search(r"(/invite/[^/\s]+/)", message.body).group(1)
        page = invitee_context.new_page()
        page.goto(live_server.url + link)
        assert page.locator("#invite-role").inner_text() == "Developer"
        problems += _page_checked(page, f"invitation {name}")
        page.get_by_label("Password").fill(INVITEE_PASSWORD)
        page.get_by_role("button", name="Create login and join").click()
        page.wait_for_url(re.compile(r"/portal/$"))
        assert "Welcome to Analytical Engines: you joined as Developer." in page.content()
        assert _nav_has(page, "/portal/keys/") and not _nav_has(page, "/portal/billing/")
        assert page.locator("#invoices").count() == 0
        problems += _page_checked(page, f"developer overview {name}")

        response = page.goto(f"{live_server.url}/portal/billing/")
        assert response.status == 403
        assert page.locator("#role-required").get_attribute("data-capability") == "billing"
        problems += _page_checked(page, f"developer refused billing {name}")
        page.goto(f"{live_server.url}/portal/keys/")
        assert page.get_by_role("heading", name="API keys", exact=True).is_visible()

        owner.goto(f"{live_server.url}/portal/team/")
        owner.get_by_role("button", name=f"Remove {invitee}").click()
        owner.wait_for_url(re.compile(r"/portal/team/$"))
        assert f"{invitee} is removed from the team" in owner.content()
        assert owner.locator(f'.member-row[data-email="{invitee}"]').count() == 0

        page.reload()  # the same signed-in session, its very next page
        assert "not a member of any customer account" in page.content()
        assert not _nav_has(page, "/portal/keys/")
        problems += _page_checked(page, f"removed member {name}")
        owner_context.close()
        invitee_context.close()
    assert problems == [], "\n".join(problems)
