"""Redis unreachable: the API keeps serving and counts into Postgres, or answers 503 if told to."""
from __future__ import annotations

import copy

import pytest
from django.db.models import Sum
from rest_framework.test import APIClient

from metering.keyconfig import key_config_forget_local
from metering.models import UsageRecord
from tests.servers import RedisServer

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def own_redis(settings, tmp_path):
    with RedisServer(tmp_path) as server:
        caches = copy.deepcopy(settings.CACHES)
        caches["default"]["LOCATION"] = server.url
        settings.CACHES = caches  # Django resets its cache connections on this change
        yield server


def get(raw: str):
    return APIClient().get("/v1/geocode?q=Paris", HTTP_X_API_KEY=raw)


def test_with_redis_gone_calls_succeed_and_are_counted_in_postgres(own_redis, customer, api_key):
    assert get(api_key.raw).status_code == 200
    own_redis.kill()
    key_config_forget_local()  # and the key is authenticated from Postgres, too
    responses = [get(api_key.raw) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[-1]["X-Quota-Remaining"] == str(customer.plan.included_calls - 3)
    rows = UsageRecord.objects.filter(customer=customer)
    assert rows.aggregate(s=Sum("calls"))["s"] == 3
    assert rows.get().api_key_id == api_key.key.pk


def test_with_redis_gone_the_hard_cap_still_holds(own_redis, free_customer, free_plan):
    from accounts.services import api_key_issue

    raw = api_key_issue(customer=free_customer, name="k").raw
    UsageRecord.objects.create(customer=free_customer, product="geocode", day=_today(),
                               calls=free_plan.included_calls - 1)
    own_redis.kill()
    assert get(raw).status_code == 200
    response = get(raw)
    assert response.status_code == 429 and response.json()["code"] == "quota_exceeded"


def test_with_fail_open_off_it_answers_503_json(own_redis, api_key, settings):
    settings.METERING_FAIL_OPEN = False
    assert get(api_key.raw).status_code == 200
    own_redis.kill()
    response = get(api_key.raw)
    assert response.status_code == 503
    assert response.json() == {"error": "Metering is unavailable; try again shortly", "code": "metering_unavailable"}
    assert not UsageRecord.objects.exists()


def _today():
    from django.utils import timezone

    return timezone.now().date()


def test_calls_counted_during_an_outage_join_the_month_counter_when_redis_returns(
    settings, tmp_path, free_customer, free_plan
):
    """A hard-capped customer cannot spend an outage's calls twice."""
    import copy

    from accounts.services import api_key_issue

    raw = api_key_issue(customer=free_customer, name="k").raw
    UsageRecord.objects.create(customer=free_customer, product="geocode", day=_today(),
                               calls=free_plan.included_calls - 5)
    with RedisServer(tmp_path) as server:
        caches = copy.deepcopy(settings.CACHES)
        caches["default"]["LOCATION"] = server.url
        settings.CACHES = caches
        assert get(raw).status_code == 200  # month counter now lives in this Redis
        from metering import connection

        connection.redis_mark_down()  # an outage, as this worker sees it
        assert [get(raw).status_code for _ in range(3)] == [200, 200, 200]  # counted in Postgres
        connection.redis_mark_up()  # Redis is back, and it kept its month counter
        assert get(raw).status_code == 200  # the 5th and last included call
        response = get(raw)
        assert response.status_code == 429 and response.json()["code"] == "quota_exceeded"
