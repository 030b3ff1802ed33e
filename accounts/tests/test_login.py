from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"  # UserFactory's


@pytest.fixture
def owner():
    return CustomerFactory(owner=UserFactory(email="Grace@Example.com", username="grace@example.com")).owner


def test_the_login_form_asks_for_an_email(client):
    html = client.get(reverse("login")).content.decode()

    assert '<label for="id_username">Email</label>' in html
    assert 'type="email"' in html


def test_login_with_the_email_in_any_case_opens_the_portal(client, owner):
    response = client.post(reverse("login"), {"username": " GRACE@example.COM ", "password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == reverse("portal")
    assert int(client.session["_auth_user_id"]) == owner.pk


def test_a_wrong_password_is_a_form_error(client, owner):
    response = client.post(reverse("login"), {"username": "grace@example.com", "password": "nope"})

    assert response.status_code == 200
    assert "That email and password do not match an account." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logins_are_limited_per_address_even_with_the_right_password(client, owner, settings):
    # Other accounts each time: the per-account limit (test_login_limits) stays out of it.
    for n in range(settings.LOGINS_PER_15_MIN_PER_IP):
        client.post(reverse("login"), {"username": f"guess{n}@example.com", "password": "wrong"})

    response = client.post(reverse("login"), {"username": "grace@example.com", "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many sign-in attempts from your network" in response.content.decode()
    assert "_auth_user_id" not in client.session
    other = client.post(
        reverse("login"), {"username": "grace@example.com", "password": PASSWORD}, REMOTE_ADDR="192.0.2.9"
    )
    assert other.status_code == 302


def test_logout_is_a_post(client, owner):
    client.force_login(owner)

    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))

    assert response.status_code == 302 and response["Location"] == reverse("pricing")
    assert "_auth_user_id" not in client.session


def test_a_signed_in_user_visiting_login_goes_to_the_portal(client, owner):
    client.force_login(owner)

    response = client.get(reverse("login"))

    assert response.status_code == 302 and response["Location"] == reverse("portal")
