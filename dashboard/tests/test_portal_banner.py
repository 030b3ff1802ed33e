"""Every portal page says when a trial ends and what happens then; the overview shows the
products the plan does not include, with the cheapest plan that does."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

import pytest
from django.urls import reverse

from billing.models import PaymentMethod
from tests.factories import CustomerFactory, seeded_plan
from tests.page_factories import seeded_public_plans

pytestmark = pytest.mark.django_db

ENDS = datetime(2030, 12, 3, 10, 0, tzinfo=dt_timezone.utc)
PORTAL_PAGES = ["portal", "portal-keys", "billing", "portal-settings", "portal-account"]


@pytest.fixture
def trial_customer(db, time_machine):
    time_machine.move_to(datetime(2030, 11, 20, 10, 0, tzinfo=dt_timezone.utc), tick=False)
    seeded_public_plans()
    return CustomerFactory(plan=seeded_plan("pro"), status="trial", trial_ends_at=ENDS)


@pytest.mark.parametrize("page", PORTAL_PAGES)
def test_a_trial_without_a_card_is_told_it_moves_to_the_free_plan(client, trial_customer, page):
    client.force_login(trial_customer.owner)

    html = client.get(reverse(page)).content.decode()

    assert ("Your Professional trial ends on 3 December 2030 (13 days left). Add a card to stay on Professional; "
            "without one you move to the Free plan.") in html


def test_a_trial_with_a_card_is_told_it_stays_on_its_plan(client, trial_customer):
    PaymentMethod.objects.create(customer=trial_customer, stripe_payment_method_id="pm_1", brand="visa", last4="4242")
    client.force_login(trial_customer.owner)

    html = client.get(reverse("portal")).content.decode()

    assert ("Your Professional trial ends on 3 December 2030 (13 days left). Your card is on file, "
            "so you stay on Professional.") in html


def test_an_active_customer_sees_no_trial_banner(client, customer):
    client.force_login(customer.owner)

    assert 'id="trial-banner"' not in client.get(reverse("portal")).content.decode()


def test_the_overview_shows_locked_products_with_an_upgrade_link(client, db):
    seeded_public_plans()
    free = CustomerFactory(plan=seeded_plan("free"))
    client.force_login(free.owner)

    response = client.get(reverse("portal"))

    assert [(p.slug, p.cheapest_plan.slug) for p in response.context["locked_products"]] == [("image", "starter")]
    html = response.content.decode()
    assert "Image analysis" in html and f'href="{reverse("billing-plan")}?plan=starter">Upgrade' in html


def test_a_plan_with_every_product_shows_no_locked_section(client, customer):
    client.force_login(customer.owner)

    assert 'id="locked-products"' not in client.get(reverse("portal")).content.decode()
