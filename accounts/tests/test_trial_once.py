"""One free trial per person at signup (issue 13, item 9; README "Billing")."""
from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from accounts.models import Customer, TrialClaim, email_canonical
from accounts.services import customer_signup, user_email_change
from tests.page_factories import STRONG_PASSWORD, seeded_public_plans, signup_data

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def plans():
    return {plan.slug: plan for plan in seeded_public_plans()}


@pytest.mark.parametrize("address, canonical", [
    ("Ada@Example.COM", "ada@example.com"),
    ("ada+billing@example.com", "ada@example.com"),
    ("a.da@example.com", "a.da@example.com"),  # only Gmail ignores dots: elsewhere a.da may be someone else
    ("A.Da+x@Gmail.com", "ada@gmail.com"),
    ("a.d.a@googlemail.com", "ada@gmail.com"),
    ("+tag@example.com", "+tag@example.com"),  # nothing before the tag: the address stays whole
])
def test_the_canonical_email_names_the_mailbox(address, canonical):
    assert email_canonical(address) == canonical


def signup(client, email: str, plan: str = "starter"):
    return client.post(reverse("signup"), signup_data(email=email, plan=plan), follow=True)


@pytest.mark.parametrize("first, second", [
    ("ada@example.com", "ADA@Example.com"),
    ("ada@example.com", "ada+second@example.com"),
    ("ada@gmail.com", "a.d.a@gmail.com"),
    ("ada@gmail.com", "A.da+new@googlemail.com"),
])
def test_a_second_signup_of_the_same_mailbox_starts_on_free_without_a_trial(client, plans, first, second):
    earlier = customer_signup(email=first, company="First", password=STRONG_PASSWORD, plan=plans["starter"])
    # The first account moved to another address, so the mailbox is free to sign up again.
    user_email_change(user=earlier.customer.owner, email="elsewhere@example.org")

    page = signup(client, second)

    assert page.status_code == 200
    customer = Customer.objects.select_related("plan").get(owner__email__iexact=second)
    assert (customer.plan, customer.status, customer.trial_ends_at) == (plans["free"], "active", None)
    assert customer.signup_terms.plan == plans["free"]
    assert ("You have had a free trial with us before, so your account starts on the Free plan. "
            "Add a card on the billing page, then switch to Starter.") in page.content.decode()
    assert TrialClaim.objects.count() == 1


def test_dots_count_outside_gmail(client, plans):
    customer_signup(email="ada@example.com", company="First", password=STRONG_PASSWORD, plan=plans["starter"])
    signup(client, "a.da@example.com")
    assert Customer.objects.get(owner__email="a.da@example.com").status == "trial"


def test_a_first_signup_claims_its_mailbox_and_starts_the_trial(client, plans):
    page = signup(client, "Ada.Lovelace+x@GoogleMail.com", plan="pro")
    customer = Customer.objects.get()
    assert (customer.plan, customer.status) == (plans["pro"], "trial")
    assert customer.trial_window()[0] == customer.created_at
    claim = TrialClaim.objects.get()
    assert (claim.kind, claim.customer, claim.value) == ("email", customer, TrialClaim.email_value("adalovelace@gmail.com"))
    assert "adalovelace" not in claim.value  # a hash, not the address
    assert "free trial with us before" not in page.content.decode()


def test_a_free_signup_claims_no_trial(client, plans):
    signup(client, "ada@example.com", plan="free")
    assert not TrialClaim.objects.exists()
    signup(client, "ada+later@example.com", plan="starter")
    assert Customer.objects.get(owner__email="ada+later@example.com").status == "trial"


def test_the_trial_is_remembered_after_the_account_that_had_it_is_deleted(client, plans):
    first = customer_signup(email="ada@gmail.com", company="First", password=STRONG_PASSWORD, plan=plans["starter"])
    first.customer.owner.delete()
    assert TrialClaim.objects.get().customer is None

    signup(client, "ada@gmail.com")

    assert Customer.objects.get().status == "active" and Customer.objects.get().plan == plans["free"]


def test_the_signup_page_says_one_free_trial_per_person(client):
    assert "One free trial per person" in client.get(reverse("signup")).content.decode()


@pytest.mark.django_db(transaction=True)
def test_two_signups_racing_for_one_mailbox_get_one_trial():
    plans = {plan.slug: plan for plan in seeded_public_plans()}
    barrier, errors = threading.Barrier(2), []

    def run(email: str) -> None:
        try:
            barrier.wait()
            customer_signup(email=email, company=email, password=STRONG_PASSWORD, plan=plans["starter"])
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(email,)) for email in ("ada@gmail.com", "a.da@gmail.com")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(Customer.objects.values_list("status", flat=True)) == ["active", "trial"]
    assert TrialClaim.objects.count() == 1
