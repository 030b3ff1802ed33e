"""README "The metered API": only a 2xx answer is billed and uses the monthly quota; anything else the product
answers is released, but keeps its place in the per-minute window."""
from __future__ import annotations

from wsgiref.util import setup_testing_defaults

import pytest
from django.core.wsgi import get_wsgi_application
from django.db.models import Sum
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from metering.keyconfig import key_config_get
from metering.batcher import meter_commits_send
from metering.meter import meter_call, meter_settle
from metering.models import UsageRecord
from metering.services import usage_flush
from metering.usage_fields import month_counter_key, open_calls_key

pytestmark = pytest.mark.django_db

GOOD = "/v1/geocode?q=Oslo"
BAD = "/v1/geocode"  # no `q`: the product answers 400


def billed(customer) -> int:
    usage_flush()
    return UsageRecord.objects.filter(customer=customer).aggregate(s=Sum("calls"))["s"] or 0


def month_counter(customer) -> int:
    from django.utils import timezone

    value = get_redis_connection("default").get(month_counter_key(customer_id=customer.pk, day=timezone.now().date()))
    return int(value or 0)


@pytest.fixture
def free_raw(free_customer):
    return api_key_issue(customer=free_customer, name="k").raw


def test_bad_input_is_free_but_keeps_its_place_in_the_window(free_customer, free_plan, free_raw):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=free_raw)
    statuses = [client.get(BAD).status_code for _ in range(free_plan.rate_per_minute)]
    assert statuses == [400] * free_plan.rate_per_minute
    response = client.get(GOOD)
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert client.get("/v1/usage").json()["calls"] == 0
    assert month_counter(free_customer) == 0
    assert billed(free_customer) == 0


def test_bad_input_does_not_use_the_monthly_quota(free_customer, free_plan, free_raw):
    UsageRecord.objects.create(customer=free_customer, product="geocode", day=_today(),
                               calls=free_plan.included_calls - 1)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=free_raw)
    assert [client.get(BAD).status_code for _ in range(3)] == [400, 400, 400]
    response = client.get(GOOD)
    assert response.status_code == 200 and response["X-Quota-Remaining"] == "0"
    response = client.get(GOOD)
    assert response.status_code == 429 and response.json()["code"] == "quota_exceeded"
    assert billed(free_customer) == free_plan.included_calls


def test_refused_calls_take_no_place_in_the_window(free_customer, free_plan, free_raw):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=free_raw)
    for _ in range(3):
        response = client.post("/v1/image/analyze", {})  # the free plan has no image product
        assert response.status_code == 403 and response.json()["code"] == "not_entitled"
    assert client.get(GOOD)["X-RateLimit-Remaining"] == str(free_plan.rate_per_minute - 1)


def test_a_2xx_answer_is_billed_once(customer, api_key):
    config = key_config_get(api_key.raw)
    result = meter_call(config=config, raw_key=api_key.raw, product="geocode", revalidate=lambda c: c)
    meter_settle(result=result, status_code=200)
    meter_settle(result=result, status_code=200)  # a retried commit finds the call billed already
    assert billed(customer) == 1
    assert month_counter(customer) == 1


def test_a_call_never_answered_is_released_by_the_flush_and_never_billed(customer, api_key, settings):
    """As when the worker serving it is killed: the call stays open, then the flush lets it go."""
    config = key_config_get(api_key.raw)
    result = meter_call(config=config, raw_key=api_key.raw, product="geocode", revalidate=lambda c: c)
    assert APIClient().get("/v1/usage", HTTP_X_API_KEY=api_key.raw).json()["calls"] == 1  # in progress
    assert billed(customer) == 0
    assert month_counter(customer) == 1  # younger than any call can run: still held
    settings.METERING_CALL_MAX_SECONDS = 0
    assert billed(customer) == 0
    assert month_counter(customer) == 0
    assert get_redis_connection("default").zcard(open_calls_key(customer_id=customer.pk, day=_today())) == 0
    meter_settle(result=result, status_code=200)  # an answer after its release is not billed
    meter_commits_send()
    assert billed(customer) == 0
    assert APIClient().get("/v1/usage", HTTP_X_API_KEY=api_key.raw).json()["calls"] == 0


@pytest.mark.django_db(transaction=True)  # a WSGI request opens and closes its own connection
@pytest.mark.parametrize("leases", [False, True], ids=["per-call", "leases"])
def test_a_call_is_billed_once_its_answer_is_written_out_not_when_the_view_returns(customer, api_key, settings,
                                                                                  leases):
    settings.METERING_LEASES = leases
    environ = {"PATH_INFO": "/v1/geocode", "QUERY_STRING": "q=Oslo", "HTTP_X_API_KEY": api_key.raw}
    setup_testing_defaults(environ)
    started = []
    answer = get_wsgi_application()(environ, lambda status, headers, exc_info=None: started.append(status))
    body = b"".join(answer)
    assert started == ["200 OK"] and b'"query":"Oslo"' in body
    # The server holds the bytes but has not closed the answer: a worker killed now bills nothing.
    meter_commits_send(leases_all=True)
    assert billed(customer) == 0
    assert get_redis_connection("default").zcard(open_calls_key(customer_id=customer.pk, day=_today())) == 1
    answer.close()  # what the WSGI server does after its last write
    meter_commits_send(leases_all=True)
    assert billed(customer) == 1
    assert month_counter(customer) == 1


def _today():
    from django.utils import timezone

    return timezone.now().date()
