"""Staff and customer sign-in share the attempt limits: per address and per account."""
from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"  # UserFactory's
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture
def staff():
    return UserFactory(email="ops@example.com", username="ops", is_staff=True, is_superuser=True)


@pytest.fixture
def owner():
    return CustomerFactory(owner=UserFactory(email="grace@example.com", username="grace@example.com")).owner


def _admin_login(client, password: str, address: str = "203.0.113.7", username: str = "ops"):
    return client.post(
        f"{ADMIN_LOGIN}?next=/admin/", {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def test_the_staff_login_refuses_the_right_password_after_25_wrong_ones(client, staff):
    statuses = [_admin_login(client, "wrong").status_code for _ in range(25)]

    response = _admin_login(client, PASSWORD)

    assert statuses[0] == 200 and statuses[-1] == 429
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "Too many sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_an_address_blocked_on_the_customer_login_is_blocked_on_the_staff_login(client, staff, settings):
    for n in range(settings.LOGINS_PER_15_MIN_PER_IP):
        client.post(reverse("login"), {"username": f"guess{n}@example.com", "password": "x"}, REMOTE_ADDR="203.0.113.7")

    response = _admin_login(client, PASSWORD)

    assert response.status_code == 429
    assert "Too many sign-in attempts from your network" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_staff_login_still_lets_the_right_password_in(client, staff):
    response = _admin_login(client, PASSWORD)

    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert int(client.session["_auth_user_id"]) == staff.pk


def test_failed_staff_sign_ins_from_many_addresses_lock_the_account_not_others(client, staff, settings):
    for n in range(settings.LOGIN_FAILURES_PER_15_MIN_PER_ACCOUNT):
        assert _admin_login(client, "wrong", address=f"198.51.100.{n + 1}").status_code == 200

    refused = _admin_login(client, PASSWORD, address="192.0.2.200")
    other = UserFactory(username="ops2", is_staff=True)
    allowed = _admin_login(client, PASSWORD, address="192.0.2.200", username=other.username)

    assert refused.status_code == 429
    assert "Too many sign-in attempts for this account" in refused.content.decode()
    assert allowed.status_code == 302


def test_failed_customer_sign_ins_from_many_addresses_lock_the_account(client, owner, settings):
    for n in range(settings.LOGIN_FAILURES_PER_15_MIN_PER_ACCOUNT):
        client.post(reverse("login"), {"username": "Grace@Example.com", "password": "x"}, REMOTE_ADDR=f"198.51.100.{n + 1}")

    response = client.post(
        reverse("login"), {"username": "grace@example.com", "password": PASSWORD}, REMOTE_ADDR="192.0.2.200"
    )

    assert response.status_code == 429
    assert "Too many sign-in attempts for this account" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_successful_sign_ins_do_not_use_up_the_account_limit(client, owner, settings):
    for n in range(settings.LOGIN_FAILURES_PER_15_MIN_PER_ACCOUNT + 2):
        response = client.post(
            reverse("login"), {"username": "grace@example.com", "password": PASSWORD}, REMOTE_ADDR=f"198.51.100.{n + 1}"
        )
        assert response.status_code == 302
        client.logout()
