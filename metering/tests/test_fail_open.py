"""Redis unreachable: the API keeps serving and counts into Postgres, or answers 503 if told to."""
from __future__ import annotations

import copy
import time

import pytest
from django.db.models import Sum
from rest_framework.test import APIClient

from accounts.models import Customer
from core.redis import redis_client
from metering.keyconfig import key_config_forget_local
from metering.models import UsageFlush, UsageRecord
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


def test_with_redis_gone_the_hard_cap_counts_what_redis_may_still_hold(own_redis, free_customer, free_plan):
    """Redis may hold up to a minute of calls since the last flush (10 on the free plan, plus
    one minute of margin): the cap refuses that many calls early rather than one too late."""
    from accounts.services import api_key_issue

    raw = api_key_issue(customer=free_customer, name="k").raw
    UsageRecord.objects.create(customer=free_customer, product="geocode", day=_today(),
                               calls=free_plan.included_calls - 2 * free_plan.rate_per_minute - 2)
    UsageFlush.objects.create(flush_id="last-run", customer=free_customer, calls=0)
    own_redis.kill()
    assert [get(raw).status_code for _ in range(2)] == [200, 200]
    response = get(raw)
    assert response.status_code == 429 and response.json()["code"] == "quota_exceeded"


def test_with_redis_gone_and_no_flush_this_month_a_capped_customer_is_refused(own_redis, free_customer):
    from accounts.services import api_key_issue

    raw = api_key_issue(customer=free_customer, name="k").raw
    own_redis.kill()
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


def test_calls_counted_during_an_outage_join_the_month_counter_when_redis_returns(own_redis, free_customer, free_plan):
    """A hard-capped customer cannot spend an outage's calls twice: the month counter Redis
    kept is rebuilt from Postgres (and what Redis holds unflushed) on the first call after."""
    from accounts.services import api_key_issue
    from metering import connection

    raw = api_key_issue(customer=free_customer, name="k").raw
    already = free_plan.included_calls - 40
    UsageRecord.objects.create(customer=free_customer, product="geocode", day=_today(), calls=already)
    UsageFlush.objects.create(flush_id="last-run", customer=free_customer, calls=0)
    assert get(raw).status_code == 200  # the month counter now lives in this Redis
    connection.redis_mark_down()  # an outage, as this worker sees it
    assert [get(raw).status_code for _ in range(3)] == [200, 200, 200]  # counted in Postgres
    version = Customer.objects.get(pk=free_customer.pk).config_version
    connection.redis_mark_up()  # Redis is back, and it kept its month counter
    response = get(raw)
    assert response.status_code == 200
    assert response["X-Quota-Remaining"] == str(free_plan.included_calls - already - 5)
    assert int(redis_client().get(f"tb:{{{free_customer.pk}}}:ver")) == version


def test_a_key_revoked_while_redis_was_down_is_refused_on_the_first_call_after(own_redis, api_key):
    from accounts.services import api_key_revoke

    assert get(api_key.raw).status_code == 200  # this worker now holds the key's config
    own_redis.kill()
    api_key_revoke(key=api_key.key)  # the new version cannot reach Redis
    own_redis.start()
    response = get(api_key.raw)
    assert response.status_code == 401 and response.json()["code"] == "key_revoked"


@pytest.mark.django_db(transaction=True)  # the version is published after commit
def test_a_process_exiting_after_counting_in_postgres_first_tells_redis(customer, api_key):
    """A worker that met Redis failing counts calls in Postgres; were it to exit without ever
    reaching Redis again, the month counter other workers use would miss those calls. So its
    exit runs the recovery, breaker open or not, before billing what it answered."""
    from metering import connection
    from metering.batcher import meter_exit

    assert [get(api_key.raw).status_code for _ in range(2)] == [200, 200]  # counted in Redis
    month_key = f"tb:{{{customer.pk}}}:m:{_today():%Y%m}"
    assert int(redis_client().get(month_key)) == 2
    connection.redis_mark_down()  # a slow Redis, as this worker saw it
    assert get(api_key.raw).status_code == 200  # counted in Postgres, unknown to the counter
    assert int(redis_client().get(month_key)) == 2

    meter_exit()  # gunicorn's graceful stop, with the breaker still open
    version = Customer.objects.get(pk=customer.pk).config_version
    assert int(redis_client().get(f"tb:{{{customer.pk}}}:ver")) == version
    assert redis_client().get(month_key) is None  # the next call, in any worker, rebuilds it
    response = get(api_key.raw)
    assert response.status_code == 200
    assert response["X-Quota-Remaining"] == str(customer.plan.included_calls - 4)
    assert int(redis_client().get(month_key)) == 4


@pytest.mark.django_db(transaction=True)  # the version is published after commit
def test_a_process_left_idle_after_counting_in_postgres_tells_redis_within_the_retry_interval(
        customer, api_key, settings):
    """No further call and no exit: the commit thread runs the recovery the process owes once the
    retry interval is over, so the month counter the other workers use is rebuilt with its calls."""
    from metering import connection

    settings.REDIS_RETRY_SECONDS = 0.3
    assert [get(api_key.raw).status_code for _ in range(2)] == [200, 200]  # counted in Redis
    month_key = f"tb:{{{customer.pk}}}:m:{_today():%Y%m}"
    connection.redis_mark_down()  # a slow Redis, as this worker saw it
    assert get(api_key.raw).status_code == 200  # counted in Postgres, unknown to the counter
    assert int(redis_client().get(month_key)) == 2

    deadline = time.monotonic() + 5
    while redis_client().get(month_key) is not None:  # deleted by the recovery: rebuilt at the next call
        assert time.monotonic() < deadline, "the idle process never ran its recovery"
        time.sleep(0.05)
    assert not connection.redis_outage_seen()
    version = Customer.objects.get(pk=customer.pk).config_version
    assert int(redis_client().get(f"tb:{{{customer.pk}}}:ver")) == version
    response = get(api_key.raw)
    assert response["X-Quota-Remaining"] == str(customer.plan.included_calls - 4)
    assert int(redis_client().get(month_key)) == 4


@pytest.mark.django_db(transaction=True)  # the recovery reads Postgres from the commit thread
def test_the_recovery_owed_reaches_a_restarted_redis_through_its_first_refused_connection(
        own_redis, customer, api_key, settings):
    from metering import connection

    settings.REDIS_RETRY_SECONDS = 0.2
    assert get(api_key.raw).status_code == 200
    own_redis.kill()
    assert get(api_key.raw).status_code == 200  # counted in Postgres; the breaker is open
    own_redis.start()  # empty, with a new run id: the first connection fails on purpose
    deadline = time.monotonic() + 5
    while connection.redis_outage_seen():  # the commit thread's ping meets the restart, then passes
        assert time.monotonic() < deadline, "the recovery never reached the restarted Redis"
        time.sleep(0.05)
    assert connection.redis_recovery_due() == float("inf")
    version = Customer.objects.get(pk=customer.pk).config_version
    assert int(redis_client().get(f"tb:{{{customer.pk}}}:ver")) == version
