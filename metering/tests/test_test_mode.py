"""Test-mode keys (README "The metered API", test mode), revoked keys and fresh entitlements."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_key_issue, api_key_revoke
from billing.selectors import invoice_compute, usage_live
from billing.subscriptions import plan_product_added
from core.periods import period_of
from metering import connection as metering_connection
from metering import testmode
from metering.models import UsageLimits, UsageRecord
from metering.services import usage_flush
from plans.models import Product

pytestmark = pytest.mark.django_db

GEOCODE = "/v1/geocode?q=Lyon"


def get(raw: str, path: str = GEOCODE):
    return APIClient().get(path, HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def test_key(customer):
    return api_key_issue(customer=customer, name="CI", test=True)


def _billing_figures(customer) -> tuple:
    customer.refresh_from_db()
    usage_flush()
    live = usage_live(customer=customer)
    rating = invoice_compute(customer=customer, period=period_of(timezone.now()))
    rows = sorted(UsageRecord.objects.filter(customer=customer).values_list("product", "day", "api_key_id", "calls"))
    return (live.month_calls, live.by_product, live.rating.total, live.rating.calls,
            rating.total, rating.calls, tuple(rating.lines), rows)


def test_a_test_key_starts_sk_test_and_answers_like_a_live_key_with_the_mode_header(api_key, test_key):
    assert test_key.raw.startswith("sk_test_") and test_key.key.is_test and test_key.key.mode == "test"
    live, test = get(api_key.raw), get(test_key.raw)
    assert (live.status_code, test.status_code) == (200, 200)
    assert live.json() == test.json()
    assert (live["Tollbooth-Mode"], test["Tollbooth-Mode"]) == ("live", "test")
    assert test["X-RateLimit-Limit"] == "10" and test["X-RateLimit-Remaining"] == "9"
    assert (test["X-Quota-Limit"], test["X-Quota-Remaining"]) == ("1000", "999")
    refused = get(test_key.raw, "/v1/geocode")  # no q: the product's own 400, same header
    assert refused.status_code == 400 and refused["Tollbooth-Mode"] == "test"


def test_the_eleventh_test_call_in_a_minute_is_429_rate_limited(customer, test_key):
    other = api_key_issue(customer=customer, name="CI 2", test=True)  # the limit is per customer
    statuses = [get((test_key.raw, other.raw)[i % 2]).status_code for i in range(testmode.PER_MINUTE)]
    assert statuses == [200] * 10
    response = get(test_key.raw)
    assert response.status_code == 429
    assert response.json() == {"error": "Rate limit exceeded", "code": "rate_limited"}
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["Tollbooth-Mode"] == "test" and response["X-RateLimit-Remaining"] == "0"


def test_test_calls_do_not_use_the_live_rate_window(free_customer, free_plan):
    live = api_key_issue(customer=free_customer, name="live").raw
    test = api_key_issue(customer=free_customer, name="test", test=True).raw
    assert [get(test).status_code for _ in range(testmode.PER_MINUTE)] == [200] * 10
    assert get(live)["X-RateLimit-Remaining"] == str(free_plan.rate_per_minute - 1)


def test_the_day_limit_is_a_429_test_day_limit_until_tomorrow(customer, test_key):
    day_key = testmode.day_counter_key(customer_id=customer.pk, day=timezone.now().date())
    metering_connection.redis_client().set(day_key, testmode.PER_DAY - 1)
    assert get(test_key.raw).status_code == 200
    response = get(test_key.raw)
    assert response.status_code == 429
    assert response.json() == {
        "error": "Test-mode limit reached: 1,000 calls a day across your test keys. Use a live key.",
        "code": "test_day_limit",
    }
    assert 1 <= int(response["Retry-After"]) <= 86400
    assert response["X-Quota-Remaining"] == "0"


def test_test_calls_leave_invoices_usage_and_records_untouched(customer, api_key, test_key):
    assert get(api_key.raw).status_code == 200
    before = _billing_figures(customer)
    assert before[0] == 1  # the live call is there: the figures can move
    assert [get(test_key.raw).status_code for _ in range(8)] == [200] * 8
    assert get(test_key.raw, "/v1/text/analyze").status_code == 405
    assert _billing_figures(customer) == before
    assert UsageRecord.objects.filter(api_key=test_key.key).count() == 0
    seen = testmode.calls_in_test_mode(customer_id=customer.pk)
    assert (seen.today, seen.month, seen.today_total) == ({"geocode": 8, "text": 1}, {"geocode": 8, "text": 1}, 9)


def test_quota_and_spend_cap_do_not_stop_test_calls(free_customer, free_plan, django_capture_on_commit_callbacks):
    live = api_key_issue(customer=free_customer, name="live").raw
    test = api_key_issue(customer=free_customer, name="test", test=True).raw
    UsageRecord.objects.create(customer=free_customer, product="geocode", day=timezone.now().date(),
                               calls=free_plan.included_calls)
    with django_capture_on_commit_callbacks(execute=True):
        UsageLimits.objects.create(customer=free_customer, call_ceiling=0)
    assert get(live).json()["code"] in {"quota_exceeded", "spend_cap"}
    assert get(test).status_code == 200


def test_a_test_call_runs_no_sql_and_one_redis_command(test_key, redis_commands):
    get(test_key.raw)  # warms the key cache and loads the script
    redis_commands.clear()
    with CaptureQueriesContext(connection) as queries:
        response = get(test_key.raw)
    assert response.status_code == 200
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert redis_commands == ["EVALSHA"]


def test_test_calls_are_refused_while_redis_is_down(test_key):
    metering_connection.redis_mark_down()
    response = get(test_key.raw)
    assert response.status_code == 503 and response.json()["code"] == "metering_unavailable"


def test_a_revoked_key_answers_key_revoked_on_the_next_call(api_key, django_capture_on_commit_callbacks):
    assert get(api_key.raw).status_code == 200  # its config is cached in this process
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=api_key.key)
    response = get(api_key.raw)
    assert response.status_code == 401
    assert response.json() == {"error": "This API key was revoked", "code": "key_revoked"}
    again = get(api_key.raw)  # from the remembered refusal, no lookup
    assert again.status_code == 401 and again.json()["code"] == "key_revoked"


def test_a_made_up_key_still_answers_invalid_api_key(api_key):
    from accounts.keyformat import key_generate

    response = get(key_generate())
    assert response.status_code == 401 and response.json()["code"] == "invalid_api_key"


@pytest.mark.parametrize("test", [False, True])
def test_a_product_granted_to_the_plan_is_callable_on_the_next_call(
    free_customer, free_plan, test, django_capture_on_commit_callbacks
):
    raw = api_key_issue(customer=free_customer, name="k", test=test).raw
    refused = APIClient().post("/v1/image/analyze", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert refused.status_code == 403 and refused.json()["code"] == "not_entitled"
    with django_capture_on_commit_callbacks(execute=True):
        assert plan_product_added(plan=free_plan, product=Product.objects.get(slug="image")) == 1
    served = APIClient().post("/v1/image/analyze", HTTP_AUTHORIZATION=f"Bearer {raw}")
    # The product's own answer to a call with no image: the entitlement passed.
    assert served.status_code == 400 and served.json()["code"] != "not_entitled"
