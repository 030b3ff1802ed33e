"""What the meter leaves in Redis: one hash slot per customer, a TTL on every key."""
from __future__ import annotations

import pytest
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from plans.services import terms_current
from tests.factories import seeded_plan

pytestmark = pytest.mark.django_db


def test_every_key_a_call_writes_has_a_ttl_and_customer_keys_share_a_hash_tag(client_with_key, customer):
    assert client_with_key.get("/v1/geocode?q=Paris").status_code == 200
    redis = get_redis_connection("default")
    keys = [key.decode() for key in redis.keys("*")]
    assert keys
    for key in keys:
        assert redis.ttl(key) > 0, key
    customer_keys = [key for key in keys if not key.startswith("tb:key:")]
    assert customer_keys and all(f"{{{customer.pk}}}" in key for key in customer_keys)


def test_it_reloads_the_script_after_redis_forgot_it(client_with_key):
    assert client_with_key.get("/v1/geocode?q=Paris").status_code == 200
    get_redis_connection("default").script_flush()
    response = client_with_key.get("/v1/geocode?q=Paris")
    assert response.status_code == 200
    assert client_with_key.get("/v1/usage").json()["calls"] == 2


def test_new_terms_apply_to_the_next_call_and_a_plan_edit_alone_changes_nothing(
    client_with_key, customer, starter_plan, django_capture_on_commit_callbacks,
):
    assert client_with_key.get("/v1/geocode?q=Paris")["X-RateLimit-Limit"] == str(starter_plan.rate_per_minute)
    with django_capture_on_commit_callbacks(execute=True):
        starter_plan.rate_per_minute = 7
        starter_plan.entitlements = ["text"]
        starter_plan.save()
    # Grandfathered: the customer keeps the terms it took (README "Billing").
    response = client_with_key.get("/v1/geocode?q=Paris")
    assert response.status_code == 200 and response["X-RateLimit-Limit"] == "100"
    with django_capture_on_commit_callbacks(execute=True):
        customer.terms = terms_current(plan=starter_plan)  # what staff's "move to current terms" does
        customer.save()
    response = client_with_key.get("/v1/geocode?q=Paris")
    assert response.status_code == 403 and response.json()["code"] == "not_entitled"
    response = client_with_key.post("/v1/text/analyze", {"text": "fine"}, format="json")
    assert response.status_code == 200 and response["X-RateLimit-Limit"] == "7"


def test_moving_to_another_plan_applies_to_the_next_call(customer, api_key, django_capture_on_commit_callbacks):
    pro = seeded_plan("pro")
    assert APIClient().get("/v1/usage", HTTP_X_API_KEY=api_key.raw).json()["plan"] == customer.plan.name
    APIClient().get("/v1/geocode?q=Paris", HTTP_X_API_KEY=api_key.raw)
    with django_capture_on_commit_callbacks(execute=True):
        customer.plan = pro
        customer.save()
    response = APIClient().get("/v1/geocode?q=Paris", HTTP_X_API_KEY=api_key.raw)
    assert response["X-RateLimit-Limit"] == str(pro.rate_per_minute)
    assert response["X-Quota-Limit"] == str(pro.included_calls)


def test_a_revoked_key_stops_reading_usage_once_the_worker_cache_expires(
    client_with_key, api_key, django_capture_on_commit_callbacks
):
    from accounts.services import api_key_revoke
    from metering.keyconfig import key_config_forget_local

    assert client_with_key.get("/v1/usage").status_code == 200  # config now cached in Redis
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=api_key.key)
    key_config_forget_local()  # as after KEY_CACHE_SECONDS
    assert client_with_key.get("/v1/usage").status_code == 401
