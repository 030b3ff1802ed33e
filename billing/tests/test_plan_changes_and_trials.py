from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from accounts.models import Customer
from billing.models import PaymentMethod, PlanChange, TrialNotice
from billing.subscriptions import customer_cancel, plan_change
from billing.tasks import trials_run
from plans.models import Plan
from tests.factories import CustomerFactory

from .conftest import at, utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def trial_customer(plans):
    return CustomerFactory(
        plan=plans["starter"], status=Customer.Status.TRIAL, created_at=utc(2026, 11, 10, 12),
        trial_ends_at=utc(2026, 11, 24, 12),
    )


def subjects() -> list[str]:
    return [message.subject for message in mail.outbox]


def test_a_plan_change_is_recorded_and_takes_effect_at_once(october_customer, plans):
    version = october_customer.config_version
    with at(utc(2026, 11, 16, 10)):
        change = plan_change(customer=october_customer, plan=plans["pro"])
    october_customer.refresh_from_db()
    assert (change.from_plan, change.to_plan, change.at, change.reason) == (
        plans["starter"], plans["pro"], utc(2026, 11, 16, 10), PlanChange.Reason.CUSTOMER)
    assert october_customer.plan == plans["pro"] and october_customer.config_version > version


@pytest.mark.parametrize("case", ["current", "hidden", "unknown"])
def test_a_change_to_the_current_a_hidden_or_an_unknown_plan_is_a_form_error(october_customer, plans, case):
    hidden = Plan.objects.create(slug="legacy", name="Legacy", price=10, included_calls=10, rate_per_minute=1,
                                 is_public=False)
    target = {"current": plans["starter"], "hidden": hidden, "unknown": Plan(pk=987654, name="Ghost")}[case]
    message = {"current": "already on the Starter plan", "hidden": "plans on offer", "unknown": "plans on offer"}[case]
    with pytest.raises(ValidationError, match=message) as error:
        plan_change(customer=october_customer, plan=target)
    assert list(error.value.message_dict) == ["plan"]
    assert not PlanChange.objects.exists()


def test_staff_may_move_a_customer_to_a_hidden_plan(october_customer):
    hidden = Plan.objects.create(slug="legacy", name="Legacy", price=10, included_calls=10, rate_per_minute=1,
                                 is_public=False)
    change = plan_change(customer=october_customer, plan=hidden, by_staff=True)
    assert (change.to_plan, change.reason) == (hidden, PlanChange.Reason.STAFF)


def test_a_cancelled_customer_cannot_change_plan(october_customer, plans):
    customer_cancel(customer=october_customer)
    with pytest.raises(ValidationError, match="cancelled"):
        plan_change(customer=october_customer, plan=plans["pro"])


def test_a_change_to_another_paid_plan_keeps_the_trial_until_it_ends(trial_customer, plans):
    with at(utc(2026, 11, 12)):
        plan_change(customer=trial_customer, plan=plans["pro"])
    trial_customer.refresh_from_db()
    assert trial_customer.status == "trial" and trial_customer.trial_ends_at == utc(2026, 11, 24, 12)


def test_a_change_to_a_plan_without_a_price_ends_the_trial(trial_customer, plans):
    with at(utc(2026, 11, 12, 7)):
        plan_change(customer=trial_customer, plan=plans["free"])
    trial_customer.refresh_from_db()
    assert trial_customer.status == "active" and trial_customer.trial_ends_at == utc(2026, 11, 12, 7)


def test_a_change_between_paid_plans_never_starts_a_trial(october_customer, plans):
    plan_change(customer=october_customer, plan=plans["enterprise"])
    october_customer.refresh_from_db()
    assert october_customer.status == "active" and october_customer.trial_ends_at is None


def test_the_reminder_goes_out_once_three_days_before_the_trial_ends(trial_customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with at(utc(2026, 11, 21, 11)):
            assert trials_run() == {"reminded": 0, "ended": 0}
        for hour in (13, 14):
            with at(utc(2026, 11, 21, hour)):
                trials_run()
    assert subjects() == ["Your Tollbooth trial ends on 24 November 2026"]
    assert "Add a card before then" in mail.outbox[0].body
    assert TrialNotice.objects.filter(customer=trial_customer).count() == 1


def test_a_trial_with_a_card_ends_active_on_its_plan(trial_customer, plans, django_capture_on_commit_callbacks):
    PaymentMethod.objects.create(customer=trial_customer, stripe_payment_method_id="pm_1", brand="visa", last4="4242")
    with at(utc(2026, 11, 24, 12, 10)), django_capture_on_commit_callbacks(execute=True):
        assert trials_run() == {"reminded": 0, "ended": 1}
        trials_run()
    trial_customer.refresh_from_db()
    assert (trial_customer.status, trial_customer.plan) == ("active", plans["starter"])
    assert subjects() == ["Your Tollbooth trial has ended"] and "You stay on the Starter plan" in mail.outbox[0].body
    assert not PlanChange.objects.exists()


def test_a_trial_without_a_card_moves_to_the_default_plan(trial_customer, plans, django_capture_on_commit_callbacks):
    with at(utc(2026, 11, 24, 13)), django_capture_on_commit_callbacks(execute=True):
        trials_run()
    trial_customer.refresh_from_db()
    assert (trial_customer.status, trial_customer.plan) == ("active", plans["free"])
    change = PlanChange.objects.get()
    assert (change.reason, change.to_plan, change.at) == ("trial_ended", plans["free"], utc(2026, 11, 24, 13))
    assert subjects() == ["Your Tollbooth trial has ended"] and "now on the Free plan" in mail.outbox[0].body
    # The trial's own end time stays: days that began before it were free.
    assert trial_customer.trial_ends_at == utc(2026, 11, 24, 12)


def test_a_trial_not_yet_over_is_left_alone(trial_customer):
    with at(trial_customer.trial_ends_at - timedelta(minutes=1)):
        trials_run()
    trial_customer.refresh_from_db()
    assert trial_customer.status == "trial"


def test_a_cancelled_customer_is_refused_by_the_api_on_the_next_call(customer, client_with_key, django_capture_on_commit_callbacks):
    assert client_with_key.get("/v1/geocode?q=Paris").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        final = customer_cancel(customer=customer)
    response = client_with_key.get("/v1/geocode?q=Paris")
    assert response.status_code == 403 and response.json()["code"] == "account_cancelled"
    assert final.is_final and final.calls == 1
