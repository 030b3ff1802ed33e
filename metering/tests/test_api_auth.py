from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.keyformat import key_generate
from accounts.models import Customer
from accounts.services import api_key_issue, api_key_revoke, api_key_rotate
from tests.factories import CustomerFactory, seeded_plan

pytestmark = pytest.mark.django_db

GEOCODE = "/v1/geocode?q=Paris"


def call(raw: str | None, path: str = GEOCODE, header: str = "bearer"):
    client = APIClient()
    if raw is not None and header == "bearer":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    elif raw is not None:
        client.credentials(HTTP_X_API_KEY=raw)
    return client.get(path)


def assert_error(response, status: int, message: str, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": message, "code": code}


def test_a_valid_key_gets_results_by_bearer_or_x_api_key(api_key):
    for header in ("bearer", "x-api-key"):
        response = call(api_key.raw, header=header)
        assert response.status_code == 200
        assert response.json()["results"][0]["name"] == "Paris"


def test_it_requires_a_key():
    response = call(None)
    assert_error(response, 401, "API key required", "api_key_required")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("raw", ["sk_live_123", "hello", "sk_live_" + "g" * 64, "Bearer", ""])
def test_it_rejects_malformed_keys(raw, db):
    response = call(raw) if raw else APIClient().get(GEOCODE, HTTP_AUTHORIZATION="Bearer ")
    expected = ("API key required", "api_key_required") if not raw else ("Invalid API key", "invalid_api_key")
    assert_error(response, 401, *expected)


def test_a_one_character_change_fails_the_checksum_without_a_query(api_key, django_assert_num_queries):
    raw = api_key.raw
    flipped = raw[:20] + ("0" if raw[20] != "0" else "1") + raw[21:]
    with django_assert_num_queries(0):
        assert_error(call(flipped), 401, "Invalid API key", "invalid_api_key")


def test_it_rejects_an_unknown_well_formed_key(db):
    assert_error(call(key_generate(live=True)), 401, "Invalid API key", "invalid_api_key")


def test_it_rejects_a_revoked_key(api_key, django_capture_on_commit_callbacks):
    assert call(api_key.raw).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=api_key.key)
    assert_error(call(api_key.raw), 401, "This API key was revoked", "key_revoked")


def test_a_rotated_key_works_during_its_grace_period_only(api_key, time_machine):
    new = api_key_rotate(key=api_key.key, grace_days=2)
    assert call(api_key.raw).status_code == 200
    assert call(new.raw).status_code == 200
    time_machine.move_to(timezone.now() + timedelta(days=2, seconds=1))
    assert_error(call(api_key.raw), 401, "Invalid API key", "invalid_api_key")
    assert call(new.raw).status_code == 200


def test_a_cancelled_account_is_refused(customer, api_key, django_capture_on_commit_callbacks):
    assert call(api_key.raw).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        customer.status = Customer.Status.CANCELLED
        customer.save()
    assert_error(call(api_key.raw), 403, "Account cancelled", "account_cancelled")


def test_past_due_serves_at_free_limits_during_grace_then_needs_payment(
    customer, api_key, time_machine, settings, django_capture_on_commit_callbacks
):
    free = seeded_plan("free")
    assert call(api_key.raw).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        customer.status = Customer.Status.PAST_DUE
        customer.past_due_since = timezone.now()
        customer.save()
    response = call(api_key.raw)
    assert response.status_code == 200
    assert response["X-RateLimit-Limit"] == str(free.rate_per_minute)
    refused = call(api_key.raw, "/v1/image/analyze").json()
    assert (refused["code"], refused["upgrade_plan"]["slug"]) == ("not_entitled", "starter")
    time_machine.move_to(timezone.now() + timedelta(days=settings.BILLING_GRACE_DAYS, seconds=5))
    assert_error(call(api_key.raw), 402, "Payment required", "payment_required")


def test_a_plan_without_the_product_is_refused_before_counting(free_plan):
    customer = CustomerFactory(plan=free_plan)
    raw = api_key_issue(customer=customer, name="k").raw
    response = APIClient().post("/v1/image/analyze", HTTP_X_API_KEY=raw)
    assert response.status_code == 403
    assert response.json() == {
        "error": "Your plan does not include this endpoint", "code": "not_entitled",
        "upgrade_url": settings.SITE_URL.rstrip("/") + "/portal/billing/plan/",
        "upgrade_plan": {"slug": "starter", "name": "Starter", "price": "49.00"},
    }
    assert "X-RateLimit-Limit" not in response
    usage = APIClient().get("/v1/usage", HTTP_X_API_KEY=raw).json()
    assert usage["calls"] == 0


def test_bad_input_is_a_400_with_field_errors(client_with_key):
    response = client_with_key.get("/v1/geocode")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_input" and "q" in body["fields"]
    response = client_with_key.get("/v1/geocode/reverse?lat=91&lon=abc")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"lat", "lon"}


def test_bad_json_and_wrong_types_are_400_not_500(client_with_key):
    response = client_with_key.post("/v1/text/analyze", data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "parse_error"
    for body in ([1, 2], {"text": 5}, {"text": ""}, "just a string"):
        response = client_with_key.post("/v1/text/analyze", data=body, format="json")
        assert response.status_code == 400, body


def test_wrong_method_and_unknown_paths_answer_json(client_with_key):
    response = client_with_key.delete("/v1/geocode?q=x")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    response = client_with_key.get("/v1/nope")
    assert response.status_code == 404 and response.json() == {"error": "Not found", "code": "not_found"}
