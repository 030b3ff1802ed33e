from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from metering.models import UsageRecord
from metering.services import usage_flush
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-Quota-Limit", "X-Quota-Remaining"]


def test_every_metered_response_carries_the_usage_headers(client_with_key, starter_plan):
    response = client_with_key.get("/v1/geocode?q=Lyon")
    assert response.status_code == 200
    assert response["X-RateLimit-Limit"] == str(starter_plan.rate_per_minute)
    assert response["X-RateLimit-Remaining"] == str(starter_plan.rate_per_minute - 1)
    assert 1 <= int(response["X-RateLimit-Reset"]) <= 60
    assert response["X-Quota-Limit"] == str(starter_plan.included_calls)
    assert response["X-Quota-Remaining"] == str(starter_plan.included_calls - 1)


def test_the_rate_limit_is_per_customer_across_keys(free_customer, free_plan):
    keys = [api_key_issue(customer=free_customer, name=f"k{i}").raw for i in range(2)]
    statuses = [APIClient().get("/v1/geocode?q=Rome", HTTP_X_API_KEY=keys[i % 2]).status_code
                for i in range(free_plan.rate_per_minute + 3)]
    assert statuses.count(200) == free_plan.rate_per_minute
    assert statuses[-3:] == [429, 429, 429]


def test_rate_limited_calls_get_429_with_retry_after_and_headers(free_customer, free_plan):
    raw = api_key_issue(customer=free_customer, name="k").raw
    for _ in range(free_plan.rate_per_minute):
        APIClient().get("/v1/geocode?q=Rome", HTTP_X_API_KEY=raw)
    response = APIClient().get("/v1/geocode?q=Rome", HTTP_X_API_KEY=raw)
    assert response.status_code == 429
    assert response.json() == {"error": "Rate limit exceeded", "code": "rate_limited"}
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["X-RateLimit-Remaining"] == "0"
    assert all(h in response for h in HEADERS)
    usage = APIClient().get("/v1/usage", HTTP_X_API_KEY=raw).json()
    assert usage["calls"] == free_plan.rate_per_minute


def test_the_free_plan_stops_at_its_included_calls(free_customer, free_plan, time_machine):
    raw = api_key_issue(customer=free_customer, name="k").raw
    UsageRecord.objects.create(customer=free_customer, product="geocode", day=_today(),
                               calls=free_plan.included_calls - 2)
    assert [APIClient().get("/v1/geocode?q=Oslo", HTTP_X_API_KEY=raw).status_code for _ in range(2)] == [200, 200]
    response = APIClient().get("/v1/geocode?q=Oslo", HTTP_X_API_KEY=raw)
    assert response.status_code == 429
    body = response.json()
    assert (body["error"], body["code"]) == ("Monthly quota exceeded. Upgrade your plan.", "quota_exceeded")
    assert body["upgrade_plan"]["slug"] == "starter"
    assert response["X-Quota-Remaining"] == "0"
    assert int(response["Retry-After"]) > 0


def test_paid_plans_go_past_included_calls_as_overage(customer, api_key, starter_plan):
    UsageRecord.objects.create(customer=customer, product="geocode", day=_today(),
                               calls=starter_plan.included_calls + 1499)
    response = APIClient().get("/v1/geocode?q=Oslo", HTTP_X_API_KEY=api_key.raw)
    assert response.status_code == 200
    assert response["X-Quota-Remaining"] == "0"
    usage = APIClient().get("/v1/usage", HTTP_X_API_KEY=api_key.raw).json()
    assert usage["overage_calls"] == 1500
    assert usage["overage_amount"] == "1.50"  # 1,500 × $0.001


def test_usage_is_not_billed_nor_held_to_the_plans_rate_limit(free_customer, free_plan):
    raw = api_key_issue(customer=free_customer, name="k").raw
    for _ in range(free_plan.rate_per_minute * 2):
        response = APIClient().get("/v1/usage", HTTP_X_API_KEY=raw)
        assert response.status_code == 200
    assert response.json()["calls"] == 0
    assert APIClient().get("/v1/geocode?q=Oslo", HTTP_X_API_KEY=raw).status_code == 200


def test_usage_reports_calls_per_product(client_with_key, starter_plan):
    client_with_key.get("/v1/geocode?q=Oslo")
    client_with_key.post("/v1/text/analyze", {"text": "I love this"}, format="json")
    client_with_key.post("/v1/text/analyze", {"text": "meh"}, format="json")
    usage_flush()
    client_with_key.get("/v1/geocode?q=Oslo")  # one flushed, one still in Redis
    body = client_with_key.get("/v1/usage").json()
    assert body["calls"] == 4
    assert body["by_product"] == {"geocode": 2, "text": 2}
    assert body["remaining"] == starter_plan.included_calls - 4
    assert body["plan"] == starter_plan.name


@pytest.mark.urls("metering.tests.urls_broken")
@pytest.mark.parametrize("mode", ["raise", "503"])
def test_a_call_answered_with_5xx_is_not_billed(client_with_key, customer, mode):
    assert client_with_key.get("/v1/geocode?q=Oslo").status_code == 200
    response = client_with_key.get(f"/v1/broken?mode={mode}")
    assert response.status_code >= 500
    assert response["Content-Type"] == "application/json"
    assert client_with_key.get("/v1/usage").json()["calls"] == 1
    usage_flush()
    assert sum(r.calls for r in UsageRecord.objects.filter(customer=customer)) == 1


def test_a_metered_call_in_steady_state_costs_no_sql_and_one_redis_command(client_with_key, redis_commands):
    client_with_key.get("/v1/geocode?q=Oslo")  # warms the key cache and loads the script
    redis_commands.clear()
    with CaptureQueriesContext(connection) as queries:
        response = client_with_key.get("/v1/geocode?q=Oslo")
    assert response.status_code == 200
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert redis_commands == ["EVALSHA"]


def _today():
    from django.utils import timezone

    return timezone.now().date()
