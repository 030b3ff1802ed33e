from __future__ import annotations

import pytest
from django.urls import reverse

from notifications.services import webhook_endpoint_set, webhook_secret_roll
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize("model", ["notificationsettings", "webhookendpoint", "webhookevent", "usagealert"])
def test_staff_can_list_every_notifications_model(staff_client, model):
    assert staff_client.get(reverse(f"admin:notifications_{model}_changelist")).status_code == 200


def test_the_admin_never_shows_a_signing_secret(staff_client, customer):
    endpoint = webhook_endpoint_set(customer=customer, url="https://hooks.example.com/in").endpoint
    old = endpoint.secret
    endpoint = webhook_secret_roll(endpoint=endpoint)

    page = staff_client.get(reverse("admin:notifications_webhookendpoint_change", args=[endpoint.pk])).content.decode()

    assert endpoint.secret_hint in page
    assert endpoint.secret not in page and old not in page
