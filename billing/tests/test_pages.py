"""The portal's billing pages, through the test client."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Customer
from billing.models import Invoice, InvoiceLine, PaymentAttempt, PaymentMethod, PlanChange
from tests.factories import CustomerFactory, seeded_plan
from tests.payments import card_confirm_as_stripe_js

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_outside_task")]


def signed_in(customer: Customer) -> Client:
    client = Client()
    client.force_login(customer.owner)
    return client


def issued_invoice(customer: Customer, *, status: str = Invoice.Status.OPEN, period: str = "2026-10") -> Invoice:
    invoice = Invoice.objects.create(
        customer=customer, period=period, number=f"TB-2026-{customer.pk:06d}" if status != "draft" else "",
        status=status, subtotal=Decimal("61.50"), total=Decimal("61.50"), plan=customer.plan, issued_at=timezone.now(),
    )
    InvoiceLine.objects.create(invoice=invoice, kind=InvoiceLine.Kind.BASE, description="Starter plan, 1–31 Oct",
                               quantity=Decimal("31"), unit_price=Decimal("49.00"), amount=Decimal("49.00"))
    InvoiceLine.objects.create(invoice=invoice, kind=InvoiceLine.Kind.OVERAGE, description="Overage: 12,500 calls",
                               quantity=Decimal("12500"), unit_price=Decimal("0.001"), amount=Decimal("12.50"), position=1)
    return invoice


@pytest.fixture
def trial_customer(db):
    return CustomerFactory(plan=seeded_plan("starter"), status=Customer.Status.TRIAL,
                           trial_ends_at=timezone.now() + timedelta(days=9, hours=3))


def test_the_billing_page_shows_plan_status_trial_days_card_and_invoices(trial_customer):
    PaymentMethod.objects.create(customer=trial_customer, stripe_payment_method_id="pm_1", brand="visa",
                                 last4="4242", exp_month=4, exp_year=2031)
    invoice = issued_invoice(trial_customer)
    issued_invoice(trial_customer, status=Invoice.Status.DRAFT, period="2026-11")

    response = signed_in(trial_customer).get("/portal/billing/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Starter" in page and 'id="billing-status">Trial<' in page
    assert f'id="trial-left">Trial ends on {trial_customer.trial_ends_at:%-d %B %Y} (10 days left)<' in page
    assert "Visa •••• 4242" in page and "Expires 04/2031" in page
    assert f'href="/portal/billing/invoices/{invoice.pk}/"' in page
    assert page.count('class="invoice-row"') == 1  # drafts are not the customer's business yet
    assert 'aria-current="page">Billing<' in page


def test_the_billing_page_needs_a_signed_in_customer():
    response = Client().get("/portal/billing/")
    assert (response.status_code, response["Location"]) == (302, "/login/?next=/portal/billing/")


def test_the_billing_page_says_when_card_payments_are_not_configured(customer, settings):
    settings.STRIPE_SECRET_KEY = ""
    page = signed_in(customer).get("/portal/billing/").content.decode()
    assert "Card payments are not set up on this server yet." in page
    response = signed_in(customer).get("/portal/billing/card/")
    assert (response.status_code, response["Location"]) == (302, "/portal/billing/")


def test_an_invoice_page_shows_lines_totals_period_status_and_payments(customer):
    invoice = issued_invoice(customer)
    PaymentAttempt.objects.create(invoice=invoice, number=1, amount=invoice.total, status=PaymentAttempt.Status.FAILED,
                                  failure_code="card_declined", failure_message="Your card was declined.")

    response = signed_in(customer).get(f"/portal/billing/invoices/{invoice.pk}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert f"Invoice {invoice.number}" in page and "Period 2026-10" in page
    assert page.count('class="invoice-line"') == 2
    assert 'id="invoice-total">$61.50<' in page
    assert "Failed: Your card was declined." in page
    assert "css/billing.css" in page  # carries the print stylesheet


@pytest.mark.parametrize("which", ["another customer's", "a draft", "a missing", "an absurd"])
def test_an_invoice_that_is_not_yours_to_see_is_a_404(customer, which):
    other = issued_invoice(CustomerFactory(plan=customer.plan))
    draft = issued_invoice(customer, status=Invoice.Status.DRAFT, period="2026-11")
    invoice_id = {"another customer's": other.pk, "a draft": draft.pk, "a missing": other.pk + 1000,
                  "an absurd": 2**70}[which]
    assert signed_in(customer).get(f"/portal/billing/invoices/{invoice_id}/").status_code == 404


def test_choosing_a_plan_states_the_prorated_effect_before_anything_changes(customer):
    pro = seeded_plan("pro")
    client = signed_in(customer)

    response = client.post("/portal/billing/plan/", {"plan": pro.pk})

    page = response.content.decode()
    assert response.status_code == 200
    assert f"Switch to {pro.name}?" in page and 'id="proration"' in page and "prorated by day" in page
    assert not PlanChange.objects.exists()
    customer.refresh_from_db()
    assert customer.plan.slug == "starter"


def test_confirming_the_change_moves_the_customer_to_the_plan(customer):
    pro = seeded_plan("pro")

    response = signed_in(customer).post("/portal/billing/plan/", {"plan": pro.pk, "confirm": "true"})

    assert (response.status_code, response["Location"]) == (302, "/portal/billing/")
    customer.refresh_from_db()
    assert customer.plan == pro
    assert PlanChange.objects.get().to_plan == pro


@pytest.mark.parametrize("choice,message", [
    ("current", "You are already on the Starter plan."),
    ("hidden", "Choose one of the plans listed."),
    ("unknown", "Choose one of the plans listed."),
])
def test_a_plan_change_to_the_current_a_hidden_or_an_unknown_plan_is_a_form_error(customer, choice, message):
    hidden = seeded_plan("enterprise")
    hidden.is_public = False
    hidden.save()
    plan_id = {"current": customer.plan_id, "hidden": hidden.pk, "unknown": 987654}[choice]

    response = signed_in(customer).post("/portal/billing/plan/", {"plan": plan_id, "confirm": "true"})

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not PlanChange.objects.exists()


def test_cancelling_asks_first_then_cancels_once(customer):
    client = signed_in(customer)
    page = client.get("/portal/billing/cancel/").content.decode()
    assert "Cancel your subscription?" in page
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE

    response = client.post("/portal/billing/cancel/", {"when": "now"})
    again = client.post("/portal/billing/cancel/", {"when": "now"})

    assert (response.status_code, response["Location"]) == (302, "/portal/billing/")
    assert again.status_code == 200 and "Your subscription is cancelled" in again.content.decode()
    customer.refresh_from_db()
    assert customer.status == Customer.Status.CANCELLED
    assert Invoice.objects.filter(customer=customer, is_final=True).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_card_page_loads_stripe_js_and_a_setup_intent_for_this_customer(stripe_server):
    customer = CustomerFactory(plan=seeded_plan("starter"))

    response = signed_in(customer).get("/portal/billing/card/")

    page = response.content.decode()
    assert response.status_code == 200
    assert f'<script src="{stripe_server.api_base}/js.stripe.com/v3/"></script>' in page
    assert 'data-client-secret="seti_' in page and 'data-publishable-key="pk_test_' in page
    customer.refresh_from_db()
    assert customer.stripe_customer_id.startswith("cus_")


@pytest.mark.django_db(transaction=True)
def test_coming_back_with_a_declined_card_shows_why_and_saves_nothing(stripe_server):
    from billing import cards

    customer = CustomerFactory(plan=seeded_plan("starter"))
    setup = cards.card_setup_start(customer=customer)
    card_confirm_as_stripe_js(client_secret=setup.client_secret, number="4000000000000002")
    client = signed_in(customer)

    response = client.get(f"/portal/billing/card/done/?setup_intent={setup.id}", follow=True)

    assert response.redirect_chain[0] == ("/portal/billing/card/", 302)
    assert "The card was not saved. Please try again or use another card." in response.content.decode()
    assert not PaymentMethod.objects.exists()
    bad = client.get("/portal/billing/card/done/?setup_intent=<script>", follow=True)
    assert "The card was not saved. Please try again." in bad.content.decode()


def test_a_switch_link_from_the_pricing_page_preselects_its_plan(customer):
    pro = seeded_plan("pro")

    response = signed_in(customer).get("/portal/billing/plan/?plan=pro")

    assert response.status_code == 200 and response.context["form"].initial["plan"] == pro.pk
    assert signed_in(customer).get("/portal/billing/plan/?plan=%00x").context["form"].initial["plan"] == customer.plan_id
