"""Words that match the product: the pricing cards list what each plan really allows, and the
emails, the trial banner and the API docs link to the page the reader needs next."""
from __future__ import annotations

import re
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from billing.emails import invoice_issued_email_send
from billing.models import Invoice
from notifications.emails import usage_alert_email_send
from notifications.forms import NotificationSettingsForm
from notifications.models import UsageAlert
from plans.selectors import plan_features
from tests.factories import CustomerFactory, UserFactory, seeded_plan
from tests.page_factories import seeded_public_plans

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_outside_task")]

SITE = "http://testserver"
ALERTS = "Usage alerts by email at the percentages you choose"
WEBHOOKS = "Webhooks for usage, invoices and payments, signed"
SPEND_CAP = "A monthly spend cap: alert only, or pause calls"


@pytest.fixture
def plans():
    return {plan.slug: plan for plan in seeded_public_plans()}


@pytest.fixture
def site(settings):
    settings.SITE_URL = SITE


def _features(html: str) -> dict[str, list[str]]:
    """Each card's feature lines, by its plan's slug."""
    out = {}
    for slug, body in re.findall(r'data-plan="([\w-]+)">(.*?)</article>', html, re.S):
        block = re.search(r'<ul class="plan-features">(.*?)</ul>', body, re.S)
        out[slug] = re.findall(r"<li>(.*?)</li>", block.group(1)) if block else []
    return out


def test_every_plan_lists_alerts_and_webhooks_and_only_paid_plans_a_spend_cap(client, plans):
    cards = _features(client.get(reverse("pricing")).content.decode())

    assert cards["free"] == ["Calls stop at the included ones: never a bill beyond the price", ALERTS, WEBHOOKS,
                             "Community support"]
    assert cards["starter"] == ["14-day free trial, no card needed", ALERTS, WEBHOOKS, SPEND_CAP, "Email support"]
    # The staff's own lines stay where no field says the same ("Webhooks" and the calls are the fields' now).
    assert cards["enterprise"] == ["30-day free trial, no card needed", ALERTS, WEBHOOKS, SPEND_CAP, "SLA 99.9%",
                                   "Dedicated support"]


@pytest.mark.parametrize("slug", ["free", "starter", "pro", "enterprise"])
def test_the_spend_cap_line_follows_the_settings_form_that_offers_it(plans, slug):
    offered = "spend_cap" in NotificationSettingsForm(plan=plans[slug]).fields

    assert (SPEND_CAP in plan_features(plans[slug])) is offered


def test_a_plan_field_changed_by_staff_changes_the_card(client, plans):
    free = plans["free"]
    free.price, free.hard_cap, free.overage_price, free.trial_days = Decimal("9"), False, Decimal("0.002"), 7
    free.save()

    cards = _features(client.get(reverse("pricing")).content.decode())

    assert cards["free"] == ["7-day free trial, no card needed", ALERTS, WEBHOOKS, SPEND_CAP, "Community support"]
    assert "spend_cap" in NotificationSettingsForm(plan=free).fields


def test_the_100_percent_usage_email_links_to_the_upgrade_page(site, plans):
    customer = CustomerFactory(plan=plans["free"])
    full = UsageAlert.objects.create(customer=customer, period="2026-11", kind=UsageAlert.Kind.USAGE, threshold=100,
                                     month_calls=1_000)
    half = UsageAlert.objects.create(customer=customer, period="2026-11", kind=UsageAlert.Kind.USAGE, threshold=50,
                                     month_calls=500)

    usage_alert_email_send(alert_id=full.pk)
    usage_alert_email_send(alert_id=half.pk)

    upgrade = f"{SITE}/portal/billing/plan/"
    at_100, at_50 = mail.outbox
    assert f"Upgrade your plan:\n\n  {upgrade}\n" in at_100.body
    assert f'<a href="{upgrade}"' in at_100.alternatives[0][0]
    assert upgrade not in at_50.body and upgrade not in at_50.alternatives[0][0]
    assert f'<a href="{SITE}/portal/"' in at_50.alternatives[0][0]


def test_the_invoice_email_links_to_the_invoice(site, plans):
    customer = CustomerFactory(plan=plans["starter"])
    invoice = Invoice.objects.create(
        customer=customer, period="2026-10", number="TB-2026-000123", status=Invoice.Status.OPEN,
        subtotal=Decimal("49.00"), total=Decimal("49.00"), plan=customer.plan, calls=0,
        issued_at=datetime(2026, 11, 1, tzinfo=dt_timezone.utc),
    )

    invoice_issued_email_send(invoice_id=invoice.pk)

    link = f"{SITE}/portal/billing/invoices/{invoice.pk}/"
    email = mail.outbox[0]
    assert f"Your invoice:\n\n  {link}\n" in email.body
    assert f'<a href="{link}"' in email.alternatives[0][0] and "View invoice TB-2026-000123" in email.alternatives[0][0]


def test_the_trial_banners_add_a_card_opens_the_card_form(client, plans, time_machine):
    time_machine.move_to(datetime(2030, 11, 20, 10, 0, tzinfo=dt_timezone.utc), tick=False)
    customer = CustomerFactory(plan=plans["pro"], status="trial",
                               trial_ends_at=datetime(2030, 12, 3, 10, 0, tzinfo=dt_timezone.utc))
    client.force_login(customer.owner)

    html = client.get(reverse("portal")).content.decode()

    banner = html[html.index('id="trial-banner"'):]
    banner = banner[:banner.index("</div>")]
    assert '<a href="/portal/billing/card/">Add a card</a>' in banner


def test_the_api_docs_keep_the_signed_in_header_with_a_way_back_to_the_portal(plans):
    customer = CustomerFactory(plan=plans["starter"], owner=UserFactory(email="ada@example.com"))
    client = Client()
    client.force_login(customer.owner)

    html = client.get("/v1/docs/").content.decode()

    header = html[html.index('<header class="docs-header">'):html.index("</header>")]
    assert '<a href="/portal/" class="docs-back">← Back to the portal</a>' in header
    for href in ("/portal/keys/", "/portal/billing/", "/portal/settings/"):
        assert f'<a href="{href}">' in header
    assert "ada@example.com" in header and 'action="/logout/"' in header
    assert "Sign up" not in header


def test_the_api_docs_header_of_a_visitor_offers_pricing_and_signup():
    html = Client().get("/v1/docs/").content.decode()

    header = html[html.index('<header class="docs-header">'):html.index("</header>")]
    assert '<a href="/">Pricing</a>' in header and '<a href="/signup/">Sign up</a>' in header
    assert "/portal/" not in header
