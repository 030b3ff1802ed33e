from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer
from metering.models import UsageRecord
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_portal_needs_a_login(client):
    response = client.get(reverse("portal"))

    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["portal", "portal-keys"])
def test_staff_without_a_customer_get_a_friendly_page(client, name):
    client.force_login(UserFactory(is_staff=True))

    response = client.get(reverse(name))

    assert response.status_code == 200
    assert "No customer account here" in response.content.decode()
    assert "Open the admin" in response.content.decode()


def test_the_portal_shows_the_account_and_its_plan(client, customer):
    customer.status = Customer.Status.TRIAL
    customer.trial_ends_at = timezone.now() + timedelta(days=14)
    customer.save()
    client.force_login(customer.owner)

    html = client.get(reverse("portal")).content.decode()

    assert customer.company in html and "Starter" in html and "Trial" in html
    assert f"Trial ends on {customer.trial_ends_at:%-d %B %Y} (14 days left)" in html
    assert reverse("portal-keys") in html


def test_the_portal_shows_this_periods_usage(client, customer):
    # A customer of last month and before: this month is one run with all 50,000 calls included.
    Customer.objects.filter(pk=customer.pk).update(created_at=timezone.now() - timedelta(days=62))
    today = timezone.now().date()
    UsageRecord.objects.create(customer=customer, product="geocode", day=today, calls=1234)
    UsageRecord.objects.create(customer=customer, product="text", day=today, calls=66)
    client.force_login(customer.owner)

    response = client.get(reverse("portal"))

    usage = response.context["usage"]
    assert usage.calls == 1300 and usage.remaining == 50_000 - 1300
    assert usage.products == [("Geocoding", 1234), ("Text analysis", 66)]
    html = response.content.decode()
    assert f"This period <span class=\"muted\">({today:%Y-%m})</span>" in html
    assert "1,300" in html and "48,700" in html


def test_the_portal_survives_redis_being_unreachable(client, customer, settings):
    client.force_login(customer.owner)
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }

    response = client.get(reverse("portal"))

    assert response.status_code == 200
