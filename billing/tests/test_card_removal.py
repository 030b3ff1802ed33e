"""Removing the card, and cancelling at the period's end (README "Customer portal"): the card is
detached at Stripe, a plan that needs one ends at the period's end and not before, and the
customer can cancel now or at the end, and change their mind until then."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from accounts.models import Customer
from billing.invoicing import invoice_generate
from billing.models import Invoice, InvoiceLine, PaymentMethod, PlanChange
from billing.scheduled_ends import scheduled_end
from billing.selectors import history_of
from billing.tasks import terms_moves_apply
from tests.payments import card_on_file, stripe_object

from .conftest import at, utc

pytestmark = pytest.mark.django_db

MID_NOVEMBER = utc(2026, 11, 20, 12)
DECEMBER_1 = utc(2026, 12, 1)


def signed_in(customer: Customer) -> Client:
    client = Client()
    client.force_login(customer.owner)
    return client


@pytest.fixture
def carded(october_customer, stripe_server):
    """On Starter since October, with a card saved through localstripe."""
    method = card_on_file(october_customer)
    october_customer.refresh_from_db()
    return october_customer, method


def test_removing_the_card_detaches_it_at_stripe_and_schedules_free_at_the_period_end(carded, plans):
    customer, method = carded

    with at(MID_NOVEMBER):
        page = signed_in(customer).get("/portal/billing/card/remove/")
        response = signed_in(customer).post("/portal/billing/card/remove/")
        billing_page = signed_in(customer).get("/portal/billing/").content.decode()

    assert page.status_code == 200
    assert "after 30 November 2026 you move to the Free plan" in " ".join(page.content.decode().split())
    assert (response.status_code, response["Location"]) == (302, "/portal/billing/")
    assert stripe_object("payment_methods", method.stripe_payment_method_id)["customer"] is None
    assert not PaymentMethod.objects.filter(customer=customer).exists()
    customer.refresh_from_db()
    assert customer.plan == plans["starter"] and customer.status == Customer.Status.ACTIVE
    move = PlanChange.objects.get(customer=customer)
    assert (move.at, move.to_plan, move.reason) == (DECEMBER_1, plans["free"], PlanChange.Reason.CUSTOMER)
    assert "You move to the Free plan after 30 November 2026" in billing_page
    assert 'id="card-on-file">None<' in billing_page


def test_the_plan_ends_at_the_period_end_not_before(carded, plans):
    customer, _ = carded
    with at(MID_NOVEMBER):
        signed_in(customer).post("/portal/billing/card/remove/")

    with at(utc(2026, 11, 30, 23, 59)):
        assert terms_moves_apply() == 0
    customer.refresh_from_db()
    assert customer.plan == plans["starter"]

    with at(utc(2026, 12, 1, 0, 1)):
        assert terms_moves_apply() == 1
        assert terms_moves_apply() == 0  # the hourly repeat changes nothing
    customer.refresh_from_db()
    assert customer.plan == plans["free"] and customer.terms.plan == plans["free"]
    assert customer.status == Customer.Status.ACTIVE

    with at(utc(2026, 12, 1, 0, 30)):
        november = invoice_generate(customer=customer, period="2026-11")
    base = november.lines.get(kind=InvoiceLine.Kind.BASE)
    assert (base.plan, base.starts_on.isoformat(), base.ends_on.isoformat()) == (
        plans["starter"], "2026-11-01", "2026-12-01")
    assert base.amount == plans["starter"].price
    assert history_of(customer=customer).terms_at(utc(2026, 12, 2)) == customer.terms_id


def test_a_card_added_again_keeps_the_plan(carded, plans):
    customer, _ = carded
    with at(MID_NOVEMBER):
        signed_in(customer).post("/portal/billing/card/remove/")
        card_on_file(customer)
        assert scheduled_end(customer=customer) is None

    with at(utc(2026, 12, 1, 0, 1)):
        terms_moves_apply()
    customer.refresh_from_db()
    assert customer.plan == plans["starter"]


def test_removing_the_card_of_a_free_plan_schedules_nothing(free_customer, stripe_server):
    method = card_on_file(free_customer)

    response = signed_in(free_customer).post("/portal/billing/card/remove/")

    assert response.status_code == 302
    assert stripe_object("payment_methods", method.stripe_payment_method_id)["customer"] is None
    assert not PlanChange.objects.filter(customer=free_customer).exists()


def test_without_a_card_the_remove_page_sends_back_to_billing(october_customer):
    response = signed_in(october_customer).post("/portal/billing/card/remove/")

    assert (response.status_code, response["Location"]) == (302, "/portal/billing/")


# --- cancel at the period's end ---

def test_the_cancel_page_offers_the_period_end_first_and_checked(october_customer):
    with at(MID_NOVEMBER):
        page = signed_in(october_customer).get("/portal/billing/cancel/").content.decode()

    assert page.index('value="period_end"') < page.index('value="now"')
    assert 'value="period_end" id="when-period-end" checked' in page
    assert "after 30 November 2026" in page


def test_cancelling_at_the_period_end_keeps_the_account_until_then(october_customer):
    client = signed_in(october_customer)
    with at(MID_NOVEMBER):
        response = client.post("/portal/billing/cancel/", {"when": "period_end"})
        billing_page = client.get("/portal/billing/").content.decode()

    assert (response.status_code, response["Location"]) == (302, "/portal/billing/")
    assert "Your subscription ends after 30 November 2026." in billing_page
    october_customer.refresh_from_db()
    assert october_customer.status == Customer.Status.ACTIVE
    assert not Invoice.objects.filter(customer=october_customer).exists()
    end = PlanChange.objects.get(customer=october_customer)
    assert (end.at, end.reason) == (DECEMBER_1, PlanChange.Reason.CANCELLED)

    with at(utc(2026, 11, 30, 23, 59)):
        terms_moves_apply()
    october_customer.refresh_from_db()
    assert october_customer.status == Customer.Status.ACTIVE

    with at(utc(2026, 12, 1, 0, 1)):
        assert terms_moves_apply() == 1
    october_customer.refresh_from_db()
    assert october_customer.status == Customer.Status.CANCELLED
    with at(utc(2026, 12, 1, 0, 30)):
        november = invoice_generate(customer=october_customer, period="2026-11")
        assert november.total == Decimal("49.00")  # the whole month, not a day less
        with pytest.raises(ValidationError, match="has no billable days in 2026-12"):
            invoice_generate(customer=october_customer, period="2026-12")


def test_a_scheduled_cancellation_can_be_undone_before_the_end(october_customer):
    client = signed_in(october_customer)
    with at(MID_NOVEMBER):
        client.post("/portal/billing/cancel/", {"when": "period_end"})
        page = client.get("/portal/billing/cancel/").content.decode()
        response = client.post("/portal/billing/cancel/", {"when": "keep"})
        again = client.post("/portal/billing/cancel/", {"when": "keep"}, follow=True)

    assert "Keep my subscription" in page
    assert response.status_code == 302
    assert "No cancellation is scheduled for this account." in again.content.decode()
    assert not PlanChange.objects.filter(customer=october_customer).exists()
    with at(utc(2026, 12, 1, 0, 1)):
        terms_moves_apply()
    october_customer.refresh_from_db()
    assert october_customer.status == Customer.Status.ACTIVE


def test_cancel_now_stays_available_and_drops_a_scheduled_end(october_customer):
    client = signed_in(october_customer)
    with at(MID_NOVEMBER):
        client.post("/portal/billing/cancel/", {"when": "period_end"})
        response = client.post("/portal/billing/cancel/", {"when": "now"})

    assert response.status_code == 302
    october_customer.refresh_from_db()
    assert october_customer.status == Customer.Status.CANCELLED
    assert Invoice.objects.filter(customer=october_customer, is_final=True, period="2026-11").count() == 1
    assert list(PlanChange.objects.filter(customer=october_customer).values_list("reason", "at")) == [
        (PlanChange.Reason.CANCELLED, MID_NOVEMBER)]


def test_an_unknown_choice_is_refused(october_customer):
    response = signed_in(october_customer).post("/portal/billing/cancel/", {"when": "yesterday"})

    assert response.status_code == 400
    october_customer.refresh_from_db()
    assert october_customer.status == Customer.Status.ACTIVE and not PlanChange.objects.exists()
