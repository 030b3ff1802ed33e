"""A customer's own limits: a call ceiling (spend cap) and alert thresholds, enforced in the
meter script with no SQL."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from metering import connection as metering_connection
from metering.events import usage_threshold_crossed
from metering.models import UsageLimits, UsageRecord
from metering.services import usage_limits_set
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

GEOCODE = "/v1/geocode?q=Oslo"


def get(raw: str):
    return APIClient().get(GEOCODE, HTTP_X_API_KEY=raw)


@pytest.fixture
def crossings():
    seen: list[dict] = []

    def receiver(sender, **kwargs):
        seen.append(kwargs)

    usage_threshold_crossed.connect(receiver)
    yield seen
    usage_threshold_crossed.disconnect(receiver)


def _today():
    from django.utils import timezone

    return timezone.now().date()


def test_a_customer_at_its_ceiling_gets_spend_cap_while_another_on_the_same_plan_is_served(
    customer, api_key, starter_plan, django_capture_on_commit_callbacks
):
    other = api_key_issue(customer=CustomerFactory(plan=starter_plan), name="other").raw
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=2)
    assert [get(api_key.raw).status_code for _ in range(2)] == [200, 200]
    response = get(api_key.raw)
    assert response.status_code == 429
    assert response.json() == {"error": "Spend cap reached", "code": "spend_cap"}
    assert int(response["Retry-After"]) > 0
    assert response["X-Quota-Remaining"] == str(starter_plan.included_calls - 2)
    assert get(other).status_code == 200
    assert APIClient().get("/v1/usage", HTTP_X_API_KEY=api_key.raw).json()["calls"] == 2


def test_raising_the_ceiling_serves_the_next_call(customer, api_key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=1)
    assert [get(api_key.raw).status_code for _ in range(2)] == [200, 429]
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=5)
    assert get(api_key.raw).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=None)
    assert get(api_key.raw).status_code == 200
    assert UsageLimits.objects.get(customer=customer).call_ceiling is None


def test_a_ceiling_counts_calls_made_before_it_was_set(customer, api_key, django_capture_on_commit_callbacks):
    UsageRecord.objects.create(customer=customer, product="geocode", day=_today(), calls=40)
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=40)
    response = get(api_key.raw)
    assert response.status_code == 429 and response.json()["code"] == "spend_cap"


def test_a_negative_ceiling_is_refused(customer):
    with pytest.raises(ValueError, match="cannot be negative"):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=-1)


def test_the_threshold_signal_fires_once_on_the_call_that_reaches_it(
    customer, api_key, crossings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[3, 2, 3, 0], call_ceiling=None)
    assert UsageLimits.objects.get(customer=customer).alert_at_calls == [2, 3]
    assert [get(api_key.raw).status_code for _ in range(4)] == [200] * 4
    period = f"{_today():%Y-%m}"
    assert crossings == [
        {"signal": usage_threshold_crossed, "customer_id": customer.pk, "period": period,
         "threshold_calls": 2, "month_calls": 2},
        {"signal": usage_threshold_crossed, "customer_id": customer.pk, "period": period,
         "threshold_calls": 3, "month_calls": 3},
    ]


def test_a_refused_call_crosses_no_threshold(customer, api_key, crossings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[2], call_ceiling=1)
    assert [get(api_key.raw).status_code for _ in range(3)] == [200, 429, 429]
    assert crossings == []


def test_with_redis_down_a_threshold_is_crossed_from_the_postgres_count(
    customer, api_key, crossings, django_capture_on_commit_callbacks
):
    UsageRecord.objects.create(customer=customer, product="geocode", day=_today(), calls=9)
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[10, 12], call_ceiling=None)
    metering_connection.redis_mark_down()
    assert [get(api_key.raw).status_code for _ in range(2)] == [200, 200]
    assert [(c["threshold_calls"], c["month_calls"]) for c in crossings] == [(10, 10)]


def test_limits_keep_the_hot_path_at_no_sql_and_one_redis_command(
    customer, client_with_key, redis_commands, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[1000], call_ceiling=5000)
    client_with_key.get(GEOCODE)  # warms the key cache and loads the script
    redis_commands.clear()
    with CaptureQueriesContext(connection) as queries:
        response = client_with_key.get(GEOCODE)
    assert response.status_code == 200
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert redis_commands == ["EVALSHA"]
