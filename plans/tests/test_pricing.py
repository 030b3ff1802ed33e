from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from plans.models import Plan
from plans.selectors import plans_public
from plans.templatetags.money import money, unit_price
from tests.page_factories import seeded_public_plans

pytestmark = pytest.mark.django_db


@pytest.fixture
def plans():
    return seeded_public_plans()


def _cards(html: str) -> dict[str, str]:
    """The HTML of each plan card, by its data-plan slug."""
    parts = re.split(r'<article class="plan-card" data-plan="([\w-]+)">', html)
    return {slug: body.split("</article>")[0] for slug, body in zip(parts[1::2], parts[2::2])}


def test_pricing_lists_the_four_public_plans_in_order(client, plans):
    response = client.get(reverse("pricing"))

    assert response.status_code == 200
    assert list(_cards(response.content.decode())) == ["free", "starter", "pro", "enterprise"]


@pytest.mark.parametrize(
    "slug, button",
    [("free", "Start free"), ("starter", "Start 14-day trial"), ("pro", "Start 14-day trial"),
     ("enterprise", "Start 30-day trial")],
)
def test_each_card_has_the_right_button_to_signup(client, plans, slug, button):
    card = _cards(client.get(reverse("pricing")).content.decode())[slug]

    assert f'href="/signup/?plan={slug}"' in card
    assert re.search(rf">\s*{button}\s*</a>", card)


def test_cards_show_price_calls_overage_and_rate_from_the_plan_rows(client, plans):
    cards = _cards(client.get(reverse("pricing")).content.decode())

    assert '<span class="amount">0</span>' in cards["free"]
    assert "1,000" in cards["free"] and "hard cap" in cards["free"] and "10 / min" in cards["free"]
    assert '<span class="amount">49</span>' in cards["starter"]
    assert "50,000" in cards["starter"] and "$0.001 / call" in cards["starter"]
    assert "$0.0005 / call" in cards["pro"] and "500 / min" in cards["pro"]
    assert '<span class="amount">999</span>' in cards["enterprise"] and "2,000 / min" in cards["enterprise"]
    assert "SLA 99.9%" in cards["enterprise"]


def test_a_plan_edited_in_the_admin_shows_its_new_values(client, plans):
    Plan.objects.filter(slug="starter").update(price=Decimal("59.50"), trial_days=7)

    card = _cards(client.get(reverse("pricing")).content.decode())["starter"]

    assert '<span class="amount">59.50</span>' in card
    assert "Start 7-day trial" in card


def test_a_hidden_plan_is_neither_listed_nor_offered(client, plans):
    Plan.objects.create(
        slug="legacy", name="Legacy", price=Decimal("5"), included_calls=10, rate_per_minute=1, is_public=False
    )

    html = client.get(reverse("pricing")).content.decode()

    assert "legacy" not in _cards(html)
    assert "legacy" not in [plan.slug for plan in plans_public()]


def test_money_formats_whole_and_fractional_amounts():
    assert money(Decimal("49.00")) == "49"
    assert money(Decimal("1250.5")) == "1,250.50"
    assert money(Decimal("0.005")) == "0.01"  # half-up, as invoices round


def test_unit_price_keeps_exactly_the_significant_digits():
    assert unit_price(Decimal("0.001000")) == "0.001"
    assert unit_price(Decimal("0.000500")) == "0.0005"
    assert unit_price(Decimal("0E-6")) == "0"


def _signed_in_cards(client, plan_slug: str, status: str = "active") -> dict[str, str]:
    from tests.factories import CustomerFactory

    customer = CustomerFactory(plan=Plan.objects.get(slug=plan_slug), status=status)
    client.force_login(customer.owner)
    html = client.get(reverse("pricing")).content.decode()
    parts = re.split(r'<article class="plan-card[^"]*" data-plan="([\w-]+)">', html)
    return {slug: body.split("</article>")[0] for slug, body in zip(parts[1::2], parts[2::2])}


def test_a_signed_in_customer_sees_its_plan_marked_and_switch_links_for_the_others(client, plans):
    cards = _signed_in_cards(client, "starter")

    assert "Current plan" in cards["starter"] and "Switch to" not in cards["starter"]
    for slug, name in (("free", "Free"), ("pro", "Professional"), ("enterprise", "Enterprise")):
        assert f'href="{reverse("billing-plan")}?plan={slug}">Switch to {name}</a>' in cards[slug]
    assert all(reverse("signup") not in card for card in cards.values())


def test_a_cancelled_customer_is_offered_no_switch(client, plans):
    cards = _signed_in_cards(client, "pro", status="cancelled")

    assert "Current plan" in cards["pro"]
    assert not any("Switch to" in card for card in cards.values())
