"""plan_change's card rule (issue 13, item 11), one trial per card (item 9) and parallel changes (item 10)."""
from __future__ import annotations

import threading
import traceback
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection

from accounts.models import Customer, TrialClaim
from billing.models import PaymentMethod, PlanChange
from billing.subscriptions import plan_change, trial_card_check
from billing.tasks import trials_run
from tests.factories import CustomerFactory, UserFactory, seeded_plan
from tests.payments import TEST_CARD, card_on_file

from .conftest import at, utc

pytestmark = pytest.mark.django_db

NOV_16 = utc(2026, 11, 16, 10)


def card(customer: Customer, fingerprint: str = "", pm: str = "pm_1") -> PaymentMethod:
    method, _ = PaymentMethod.objects.update_or_create(
        customer=customer, defaults=dict(stripe_payment_method_id=pm, fingerprint=fingerprint, brand="visa",
                                         last4="4242"))
    return method


@pytest.fixture
def free_customer(plans):
    return CustomerFactory(plan=plans["free"], created_at=utc(2026, 10, 1, 9),
                           owner=UserFactory(email="ada@example.com"))


def refused(customer: Customer, plan, match: str) -> ValidationError:
    before = PlanChange.objects.filter(customer=customer).count()
    with pytest.raises(ValidationError, match=match) as error:
        plan_change(customer=customer, plan=plan)
    assert error.value.error_dict["plan"][0].code == "card_required"
    customer.refresh_from_db()
    assert customer.plan.slug == "free" and PlanChange.objects.filter(customer=customer).count() == before
    return error.value


# --- Free to a paid plan: a card, a first trial, or a card first (item 11) ---

def test_a_free_customer_with_a_card_moves_to_a_paid_plan_at_once(free_customer, plans):
    card(free_customer)
    with at(NOV_16):
        change = plan_change(customer=free_customer, plan=plans["starter"])
    free_customer.refresh_from_db()
    assert (free_customer.plan, free_customer.status, free_customer.trial_ends_at) == (plans["starter"], "active", None)
    assert (change.reason, change.at, change.terms.price) == ("customer", NOV_16, plans["starter"].price)


def test_a_free_customer_without_a_card_starts_the_plans_trial_once(free_customer, plans):
    with at(NOV_16):
        plan_change(customer=free_customer, plan=plans["pro"])
    free_customer.refresh_from_db()
    assert (free_customer.plan, free_customer.status) == (plans["pro"], "trial")
    assert free_customer.trial_window() == (NOV_16, NOV_16 + timedelta(days=14))
    assert TrialClaim.objects.get(customer=free_customer).kind == "email"

    with at(NOV_16 + timedelta(days=1)):
        plan_change(customer=free_customer, plan=plans["free"])  # a plan without a price ends the trial
        refused(free_customer, plans["starter"], "You have had your free trial, so add a card on the billing page "
                                                 "first, then switch to Starter.")


def test_the_trial_of_a_plan_change_ends_on_the_free_plan_without_a_card(free_customer, plans,
                                                                          django_capture_on_commit_callbacks):
    with at(NOV_16):
        plan_change(customer=free_customer, plan=plans["starter"])
    with at(NOV_16 + timedelta(days=14, minutes=5)), django_capture_on_commit_callbacks(execute=True):
        trials_run()
    free_customer.refresh_from_db()
    assert (free_customer.plan, free_customer.status) == (plans["free"], "active")
    assert [m.subject for m in mail.outbox] == ["Your Tollbooth trial has ended"]


def test_the_billing_page_asks_a_free_customer_who_had_a_trial_for_a_card(client, free_customer, plans):
    Customer.objects.filter(pk=free_customer.pk).update(trial_ends_at=utc(2026, 10, 15))
    client.force_login(free_customer.owner)
    response = client.post("/portal/billing/plan/", {"plan": plans["starter"].pk, "confirm": "true"})
    assert response.status_code == 200
    assert ("You have had your free trial, so add a card on the billing page first, then switch to Starter."
            in response.content.decode())
    assert not PlanChange.objects.exists()


def test_a_free_customer_whose_mailbox_had_a_trial_on_a_deleted_account_must_add_a_card(free_customer, plans):
    TrialClaim.objects.create(kind="email", value=TrialClaim.email_value("ADA+old@example.com"), customer=None)
    refused(free_customer, plans["starter"], "You have had your free trial")


def test_a_paid_plan_without_a_trial_needs_a_card_first(free_customer):
    no_trial = seeded_plan("starter")
    no_trial.trial_days = 0
    no_trial.save()
    error = refused(free_customer, no_trial, "Add a card on the billing page first, then switch to Starter.")
    assert "free trial" not in str(error)


def test_a_past_due_free_customer_gets_no_trial(free_customer, plans):
    Customer.objects.filter(pk=free_customer.pk).update(status=Customer.Status.PAST_DUE)
    refused(free_customer, plans["starter"], "Add a card on the billing page first")


def test_staff_move_a_free_customer_without_a_card_to_a_paid_plan_and_no_trial_starts(free_customer, plans):
    with at(NOV_16):
        change = plan_change(customer=free_customer, plan=plans["enterprise"], by_staff=True)
    free_customer.refresh_from_db()
    assert (change.reason, free_customer.plan, free_customer.status) == ("staff", plans["enterprise"], "active")
    assert free_customer.trial_ends_at is None and not TrialClaim.objects.exists()


def test_the_card_rule_leaves_changes_between_paid_plans_and_to_free_alone(october_customer, plans):
    plan_change(customer=october_customer, plan=plans["pro"])
    plan_change(customer=october_customer, plan=plans["free"])
    assert list(PlanChange.objects.values_list("to_plan__slug", flat=True)) == ["pro", "free"]


# --- One trial per card (item 9) ---

@pytest.fixture
def trial_customer(plans):
    return CustomerFactory(plan=plans["starter"], status=Customer.Status.TRIAL, created_at=utc(2026, 11, 10, 12),
                           trial_ends_at=utc(2026, 11, 24, 12), owner=UserFactory(email="bo@example.com"))


@pytest.fixture
def earlier_trial(plans):
    """Another person's account that had its trial and then saved card fp_used."""
    customer = CustomerFactory(plan=plans["starter"], created_at=utc(2026, 9, 1), trial_ends_at=utc(2026, 9, 15),
                               owner=UserFactory(email="cy@example.com"))
    assert trial_card_check(customer=customer, method=card(customer, "fp_used", "pm_cy")) is False
    return customer


def test_a_card_another_account_had_a_trial_with_ends_the_trial_at_once(earlier_trial, trial_customer,
                                                                       django_capture_on_commit_callbacks):
    assert TrialClaim.objects.get(kind="card").customer == earlier_trial
    with at(NOV_16), django_capture_on_commit_callbacks(execute=True):
        assert trial_card_check(customer=trial_customer, method=card(trial_customer, "fp_used", "pm_bo")) is True
    trial_customer.refresh_from_db()
    assert (trial_customer.status, trial_customer.plan.slug, trial_customer.trial_ends_at) == ("active", "starter", NOV_16)
    assert [m.subject for m in mail.outbox] == ["Your Tollbooth trial has ended"]
    assert "You stay on the Starter plan" in mail.outbox[0].body


def test_the_card_still_counts_after_the_account_that_had_the_trial_is_deleted(earlier_trial, trial_customer):
    earlier_trial.owner.delete()
    assert TrialClaim.objects.get(kind="card").customer is None
    with at(NOV_16):
        assert trial_card_check(customer=trial_customer, method=card(trial_customer, "fp_used")) is True


def test_a_new_card_keeps_the_trial_and_is_claimed_by_it(earlier_trial, trial_customer):
    with at(NOV_16):
        assert trial_card_check(customer=trial_customer, method=card(trial_customer, "fp_new")) is False
        # Saving it again (the webhook and the browser both arrive) changes nothing.
        assert trial_card_check(customer=trial_customer, method=card(trial_customer, "fp_new")) is False
    trial_customer.refresh_from_db()
    assert trial_customer.status == "trial" and trial_customer.trial_ends_at == utc(2026, 11, 24, 12)
    assert TrialClaim.objects.get(kind="card", value="fp_new").customer == trial_customer


def test_a_card_that_only_paid_never_ends_someone_elses_trial(october_customer, trial_customer):
    # October's customer never had a trial: its card stands for no trial.
    assert trial_card_check(customer=october_customer, method=card(october_customer, "fp_paying")) is False
    assert not TrialClaim.objects.filter(kind="card").exists()
    with at(NOV_16):
        assert trial_card_check(customer=trial_customer, method=card(trial_customer, "fp_paying")) is False
    trial_customer.refresh_from_db()
    assert trial_customer.status == "trial"


def test_a_card_without_a_fingerprint_is_not_checked(earlier_trial, trial_customer):
    assert trial_card_check(customer=trial_customer, method=card(trial_customer, "")) is False
    assert TrialClaim.objects.filter(kind="card").count() == 1


def test_a_card_saved_through_stripe_ends_a_trial_another_account_had_with_it(plans, stripe_server):
    """End to end: localstripe gives both accounts the same fingerprint for the same number."""
    first = CustomerFactory(plan=plans["starter"], trial_ends_at=utc(2026, 9, 15), created_at=utc(2026, 9, 1),
                            owner=UserFactory(email="dee@example.com"))
    second = CustomerFactory(plan=plans["starter"], status=Customer.Status.TRIAL,
                             trial_ends_at=utc(2099, 1, 1), owner=UserFactory(email="eve@example.com"))
    assert card_on_file(first, TEST_CARD).fingerprint
    card_on_file(second, TEST_CARD)
    second.refresh_from_db()
    assert second.status == "active" and second.trial_ends_at < utc(2099, 1, 1)


# --- Ten parallel plan changes (item 10) ---

@pytest.mark.django_db(transaction=True)
def test_ten_parallel_plan_changes_leave_a_consistent_history():
    targets = [seeded_plan(slug) for slug in ("pro", "enterprise", "starter", "free", "pro",
                                              "starter", "enterprise", "free", "pro", "starter")]
    customer = CustomerFactory(plan=seeded_plan("starter"), owner=UserFactory(email="race@example.com"))
    card(customer)
    barrier, outcomes = threading.Barrier(len(targets)), []

    def change(plan) -> None:
        try:
            barrier.wait()
            plan_change(customer=Customer.objects.get(pk=customer.pk), plan=plan)
            outcomes.append("changed")
        except ValidationError as error:
            outcomes.append(" ".join(error.messages))
        except BaseException as error:  # noqa: BLE001 - anything else is the failure under test
            outcomes.append(traceback.format_exc())
        finally:
            connection.close()

    threads = [threading.Thread(target=change, args=(plan,)) for plan in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(outcome == "changed" or outcome.startswith("You are already on the ") for outcome in outcomes), "\n".join(outcomes)
    history = list(PlanChange.objects.filter(customer=customer).order_by("at", "pk"))
    assert len(history) == outcomes.count("changed") >= 1
    assert history[0].from_plan.slug == "starter"
    assert all(earlier.to_plan_id == later.from_plan_id for earlier, later in zip(history, history[1:]))
    customer.refresh_from_db()
    assert customer.plan_id == history[-1].to_plan_id and customer.terms_id == history[-1].terms_id
