from __future__ import annotations

import pytest
from django.db.models import Sum
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from accounts.models import ApiKey
from metering import connection
from metering.models import UsageFlush, UsageRecord
from metering.services import usage_batch_apply, usage_batches_take, usage_flush
from metering.tasks import usage_flush as usage_flush_task

pytestmark = pytest.mark.django_db


def calls(raw: str, n: int, path: str = "/v1/geocode?q=Paris") -> None:
    for _ in range(n):
        assert APIClient().get(path, HTTP_X_API_KEY=raw).status_code == 200


def total(customer) -> int:
    return UsageRecord.objects.filter(customer=customer).aggregate(s=Sum("calls"))["s"] or 0


def test_the_flush_moves_counts_into_postgres_per_key_product_and_day(customer, api_key):
    calls(api_key.raw, 3)
    calls(api_key.raw, 2, "/v1/geocode/reverse?lat=48.85&lon=2.35")
    report = usage_flush_task.delay().get()
    assert report == {"customers": 1, "calls": 5, "batches_skipped": 0}
    row = UsageRecord.objects.get(customer=customer)
    assert (row.api_key_id, row.product, row.calls) == (api_key.key.pk, "geocode", 5)
    key = ApiKey.objects.get(pk=api_key.key.pk)
    assert key.call_count == 5 and key.last_used_at is not None
    assert usage_flush().calls == 0  # nothing new: nothing written
    assert total(customer) == 5


def test_a_crash_between_reading_and_committing_counts_each_call_once(customer, api_key):
    calls(api_key.raw, 4)
    # The flush read the counters, then died before committing.
    taken = usage_batches_take(customer_ids=[customer.pk])
    assert taken and total(customer) == 0
    calls(api_key.raw, 1)  # new calls keep arriving meanwhile
    usage_flush()  # the retry finds the batch in flight and applies it
    assert total(customer) == 4
    usage_flush()
    assert total(customer) == 5


def test_a_crash_after_committing_does_not_count_twice(customer, api_key):
    calls(api_key.raw, 3)
    [(customer_id, batch)] = usage_batches_take(customer_ids=[customer.pk])
    assert usage_batch_apply(customer_id=customer_id, batch=batch) == 3  # committed, then died
    report = usage_flush()  # the retry sees the flush id in Postgres and only drops the batch
    assert report.batches_skipped == 1 and report.calls == 0
    assert total(customer) == 3
    assert UsageFlush.objects.filter(customer=customer).count() == 1
    assert not get_redis_connection("default").exists(connection.customer_key(customer.pk, "inflight"))


def test_after_redis_loses_everything_postgres_totals_and_the_quota_hold(free_customer, free_plan):
    from accounts.services import api_key_issue

    raw = api_key_issue(customer=free_customer, name="k").raw
    UsageRecord.objects.create(customer=free_customer, product="text", day=_today(),
                               calls=free_plan.included_calls - 6)
    calls(raw, 4)
    usage_flush()
    calls(raw, 1)  # counted in Redis only, then lost: at most one flush interval
    get_redis_connection("default").flushall()
    calls(raw, 1)  # the month counter is re-seeded from Postgres
    response = APIClient().get("/v1/geocode?q=Paris", HTTP_X_API_KEY=raw)
    assert response.status_code == 200 and response["X-Quota-Remaining"] == "0"
    response = APIClient().get("/v1/geocode?q=Paris", HTTP_X_API_KEY=raw)
    assert response.status_code == 429 and response.json()["code"] == "quota_exceeded"
    usage_flush()
    assert total(free_customer) == free_plan.included_calls - 6 + 4 + 2


def test_refunds_taken_after_a_flush_still_sum_right(customer, api_key):
    from metering.meter import meter_refund
    from metering.keyconfig import key_config_get
    from metering.meter import meter_call

    config = key_config_get(api_key.raw)
    result = meter_call(config=config, raw_key=api_key.raw, product="geocode", revalidate=lambda c: c)
    usage_flush()
    meter_refund(result)
    usage_flush()
    assert total(customer) == 0


def _today():
    from django.utils import timezone

    return timezone.now().date()
