from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts.models import Customer
from billing.models import Invoice
from tests.factories import InvoiceFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def owner(customer):
    customer.owner.set_password(PASSWORD)
    customer.owner.save()
    return customer.owner


@pytest.fixture
def signed_in(client, owner):
    client.force_login(owner)
    return client


def test_the_account_page_shows_the_three_forms(signed_in, owner):
    response = signed_in.get(reverse("portal-account"))

    assert response.status_code == 200
    html = response.content.decode()
    assert owner.email in html
    for form_id in ("email-form", "password-form"):
        assert f'id="{form_id}"' in html
    assert reverse("portal-account-delete") in html


def test_an_email_change_with_the_current_password_waits_for_the_new_address_to_confirm(signed_in, owner):
    # The link and the change itself: accounts/tests/test_account_safety.py.
    before = owner.email
    response = signed_in.post(reverse("portal-account-email"),
                              {"email-email": "New.Address@Example.com", "email-password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == reverse("portal-account")
    owner.refresh_from_db()
    assert owner.email == before


def test_the_email_does_not_change_without_the_right_password(signed_in, owner):
    before = owner.email

    response = signed_in.post(reverse("portal-account-email"), {"email-email": "x@example.com", "email-password": "nope"})

    assert response.status_code == 400
    assert response.context["email_form"].errors["password"] == ["That is not your current password."]
    owner.refresh_from_db()
    assert owner.email == before


def test_an_email_another_account_uses_is_a_form_error(signed_in):
    UserFactory(email="taken@example.com")

    response = signed_in.post(reverse("portal-account-email"), {"email-email": "TAKEN@example.com", "email-password": PASSWORD})

    assert response.status_code == 400
    assert "already exists" in str(response.context["email_form"].errors["email"])


def test_the_password_changes_and_this_session_stays_signed_in(signed_in, owner):
    new = "a brand new passphrase 42"

    response = signed_in.post(reverse("portal-account-password"), {
        "password-old_password": PASSWORD, "password-new_password1": new, "password-new_password2": new,
    })

    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password(new)
    assert signed_in.get(reverse("portal-account")).status_code == 200


def test_a_wrong_old_password_changes_nothing(signed_in, owner):
    response = signed_in.post(reverse("portal-account-password"), {
        "password-old_password": "wrong", "password-new_password1": "x1y2z3w4v5u6", "password-new_password2": "x1y2z3w4v5u6",
    })

    assert response.status_code == 400
    assert "old_password" in response.context["password_form"].errors
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_the_delete_page_asks_for_the_password_first(signed_in, customer):
    response = signed_in.post(reverse("portal-account-delete"), {"password": "wrong"})

    assert response.status_code == 200
    assert response.context["form"].errors["password"] == ["That is not your current password."]
    customer.refresh_from_db()
    assert customer.status != Customer.Status.CANCELLED and customer.owner.is_active


def test_deleting_the_account_cancels_keeps_invoices_and_ends_the_login(signed_in, client, customer, owner):
    earlier = InvoiceFactory(customer=customer, period="2020-01", status=Invoice.Status.PAID)

    response = signed_in.post(reverse("portal-account-delete"), {"password": PASSWORD}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("pricing")
    assert "Your account is closed and you are logged out." in response.content.decode()
    customer.refresh_from_db()
    owner.refresh_from_db()
    assert customer.status == Customer.Status.CANCELLED and owner.is_active is False
    assert Invoice.objects.filter(pk=earlier.pk).exists()
    assert Invoice.objects.filter(customer=customer).exclude(pk=earlier.pk).exclude(status=Invoice.Status.DRAFT).count() == 1
    assert not client.login(username=owner.username, password=PASSWORD)
    refused = client.post(reverse("login"), {"username": owner.email, "password": PASSWORD})
    assert refused.status_code == 200 and "_auth_user_id" not in client.session


def test_logging_out_says_so_on_the_next_page(signed_in):
    response = signed_in.post(reverse("logout"), follow=True)

    assert response.redirect_chain == [(reverse("pricing"), 302)]
    assert "You are logged out." in response.content.decode()


def test_another_user_without_a_customer_gets_the_friendly_page(client):
    client.force_login(get_user_model().objects.create_user(username="staff@example.com", password=PASSWORD))

    response = client.get(reverse("portal-account"))

    assert response.status_code == 200 and "accounts/no_membership.html" in [t.name for t in response.templates]


def test_the_account_page_needs_a_sign_in(client):
    response = client.get(reverse("portal-account"))

    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))



def test_wrong_current_passwords_share_the_sign_in_failure_budget(signed_in, owner, settings):
    settings.LOGIN_FAILURES_PER_15_MIN_PER_ACCOUNT = 3
    for _ in range(3):
        signed_in.post(reverse("portal-account-email"), {"email-email": "x@example.com", "email-password": "guess"})

    right = signed_in.post(reverse("portal-account-delete"), {"password": PASSWORD})

    assert right.status_code == 200
    assert "Too many wrong passwords" in str(right.context["form"].errors["password"])
    owner.refresh_from_db()
    assert owner.is_active and owner.email != "x@example.com"
