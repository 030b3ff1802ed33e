"""What a client cannot make us spend without limit: lookups of made-up keys, and /v1/usage."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient, APIRequestFactory

from accounts.keyformat import key_generate
from accounts.services import api_key_issue
from metering.apis import MeteredApi
from metering.keyconfig import key_config_get
from metering.services import usage_batch_apply, usage_batch_release, usage_batches_take, usage_flush
from metering.gate import metered_admit
from metering.throttling import RateLimited
from plans.models import BuiltinProduct
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

GEOCODE = "/v1/geocode?q=Oslo"


def get(raw: str, path: str = GEOCODE, address: str = "203.0.113.7"):
    return APIClient().get(path, HTTP_X_API_KEY=raw, REMOTE_ADDR=address)


def test_a_made_up_key_seen_before_costs_no_query_and_no_redis_command(db, redis_commands):
    made_up = key_generate()  # passes the checksum, matches no key
    assert get(made_up).status_code == 401
    redis_commands.clear()
    with CaptureQueriesContext(connection) as queries:
        response = get(made_up)
    assert response.status_code == 401 and response.json()["code"] == "invalid_api_key"
    assert len(queries) == 0 and redis_commands == []


def test_a_flood_of_made_up_keys_is_cut_off_per_address(settings, api_key):
    settings.API_INVALID_KEYS_PER_MINUTE = 5
    assert [get(key_generate()).status_code for _ in range(5)] == [401] * 5
    with CaptureQueriesContext(connection) as queries:
        response = get(key_generate())
    assert response.status_code == 429
    assert response.json() == {"error": "Too many invalid API keys from this address", "code": "too_many_invalid_keys"}
    assert 1 <= int(response["Retry-After"]) <= 60
    assert len(queries) == 0
    assert get(api_key.raw, address="198.51.100.1").status_code == 200  # another address is served


def test_made_up_keys_cannot_push_real_keys_out_of_the_cache(client_with_key, settings, monkeypatch):
    from metering import keyconfig

    monkeypatch.setattr(keyconfig, "LOCAL_MAX_ENTRIES", 10)
    settings.API_INVALID_KEYS_PER_MINUTE = 1000
    settings.KEY_CACHE_SECONDS = 600  # the real key's copy must not simply expire meanwhile
    assert client_with_key.get(GEOCODE).status_code == 200
    for _ in range(30):
        assert get(key_generate()).status_code == 401
    with CaptureQueriesContext(connection) as queries:
        assert client_with_key.get(GEOCODE).status_code == 200
    assert len(queries) == 0


def test_usage_answers_429_past_its_own_limit_per_customer(settings, api_key, starter_plan):
    settings.USAGE_API_PER_MINUTE = 3
    second_key = api_key_issue(customer=api_key.key.customer, name="second").raw
    assert [get(raw, "/v1/usage").status_code for raw in (api_key.raw, second_key, api_key.raw)] == [200] * 3
    response = get(second_key, "/v1/usage")
    assert response.status_code == 429
    assert response.json() == {"error": "Rate limit exceeded", "code": "rate_limited"}
    assert 1 <= int(response["Retry-After"]) <= 60
    other = api_key_issue(customer=CustomerFactory(plan=starter_plan), name="k").raw
    assert get(other, "/v1/usage").status_code == 200
    assert get(api_key.raw).status_code == 200  # the metered API is a separate limit


def test_usage_in_steady_state_runs_no_sql(client_with_key):
    client_with_key.get(GEOCODE)
    assert client_with_key.get("/v1/usage").json()["calls"] == 1
    client_with_key.get(GEOCODE)
    with CaptureQueriesContext(connection) as queries:
        body = client_with_key.get("/v1/usage").json()
    assert body["calls"] == 2
    assert len(queries) == 0, [q["sql"] for q in queries]


def test_cached_usage_stays_exact_through_every_step_of_a_flush(client_with_key, customer):
    def usage() -> int:
        return client_with_key.get("/v1/usage").json()["calls"]

    assert [client_with_key.get(GEOCODE).status_code for _ in range(3)] == [200] * 3
    assert usage() == 3
    [(customer_id, batch)] = usage_batches_take(customer_ids=[customer.pk])  # the flush took the counters
    assert usage() == 3
    client_with_key.get(GEOCODE)
    assert usage() == 4
    usage_batch_apply(customer_id=customer_id, batch=batch)  # committed, not yet released
    assert usage() == 4
    usage_batch_release(customer_id=customer_id, flush_id=batch["__id"])
    assert usage() == 4
    usage_flush()
    assert usage() == 4


def test_the_gate_refuses_with_the_meters_error_and_leaves_what_settling_needs(free_customer, free_plan):
    """A call past the limit: the gate raises 429 `rate_limited` with a Retry-After inside the
    window, and leaves the meter's answer on the request (the 429's X-RateLimit headers)."""

    class View(MeteredApi):
        product = BuiltinProduct.GEOCODE

    raw = api_key_issue(customer=free_customer, name="k").raw
    for _ in range(free_plan.rate_per_minute):
        assert get(raw).status_code == 200
    request = View().initialize_request(APIRequestFactory().get(GEOCODE, HTTP_X_API_KEY=raw))
    with pytest.raises(RateLimited, match="Rate limit exceeded") as refused:
        metered_admit(request, product=BuiltinProduct.GEOCODE)
    assert refused.value.get_codes() == "rate_limited" and 1 <= refused.value.wait <= 60
    assert request.meter.config == key_config_get(raw) == request.auth
    assert request.meter.rate_remaining == 0 and not request.meter.allowed


def test_a_refused_key_leaves_the_request_unauthenticated(free_customer):
    """DRF's contract after a failed authentication: user and auth None, not read again."""
    request = MeteredApi().initialize_request(APIRequestFactory().get(GEOCODE, HTTP_X_API_KEY=key_generate()))
    with pytest.raises(AuthenticationFailed, match="Invalid API key"):
        metered_admit(request, product=BuiltinProduct.GEOCODE)
    assert request.user is None and request.auth is None
