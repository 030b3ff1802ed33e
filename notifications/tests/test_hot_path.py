"""Settings reach the API: alerts fire once under real concurrency, a hard-stop cap answers 429."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from notifications.models import UsageAlert
from notifications.services import notification_settings_update, webhook_endpoint_set
from plans.models import Plan
from tests.factories import CustomerFactory
from tests.servers import Gunicorn

from .conftest import LONG_AGO
from .receiver import Receiver

GEOCODE = "/v1/geocode?q=Oslo"


def small_plan(**fields) -> Plan:
    """$1 a month, 100 calls included, a cent per call beyond: caps are reached in a few calls."""
    values = dict(slug="metered-small", name="Metered small", price=Decimal("1.00"), included_calls=100,
                  overage_price=Decimal("0.01"), rate_per_minute=10_000, entitlements=["geocode", "text", "image"])
    return Plan.objects.create(**{**values, **fields})


def _get(url: str, raw: str) -> int:
    request = urllib.request.Request(url, headers={"X-API-Key": raw})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_200_concurrent_calls_on_two_workers_fire_each_threshold_exactly_once():
    # Customer since before the month: its run is the whole month, 100 calls included (a signup
    # today would include only today's share of them).
    customer = CustomerFactory(plan=small_plan(), created_at=LONG_AGO)
    raw = api_key_issue(customer=customer, name="load").raw
    with Receiver() as receiver, Gunicorn(workers=2, threads=8) as server:
        webhook_endpoint_set(customer=customer, url=receiver.url)
        with ThreadPoolExecutor(max_workers=32) as pool:
            statuses = list(pool.map(lambda _: _get(f"{server.url}{GEOCODE}", raw), range(200)))

        assert statuses == [200] * 200
        assert sorted(UsageAlert.objects.filter(customer=customer).values_list("threshold", "month_calls")) == [(80, 80), (100, 100)]
        events = sorted(json.loads(r.body)["data"]["threshold_percent"] for r in receiver.received)
        assert events == [80, 100]


@pytest.mark.django_db
def test_a_customer_at_its_hard_stop_cap_gets_429_while_another_on_the_plan_is_served(django_capture_on_commit_callbacks):
    plan = small_plan()
    capped, other = CustomerFactory(plan=plan, created_at=LONG_AGO), CustomerFactory(plan=plan, created_at=LONG_AGO)
    capped_key, other_key = api_key_issue(customer=capped, name="a").raw, api_key_issue(customer=other, name="b").raw
    with django_capture_on_commit_callbacks(execute=True):
        # $1 base + 5 cents of overage: 105 calls.
        notification_settings_update(customer=capped, alerts_enabled=True, thresholds=[80, 100], spend_cap=Decimal("1.05"), cap_mode="stop")
    client = APIClient()

    served = [client.get(GEOCODE, HTTP_X_API_KEY=capped_key).status_code for _ in range(105)]
    refused = client.get(GEOCODE, HTTP_X_API_KEY=capped_key)

    assert served == [200] * 105
    assert refused.status_code == 429
    assert refused.json() == {"error": "Spend cap reached", "code": "spend_cap"}
    assert [client.get(GEOCODE, HTTP_X_API_KEY=other_key).status_code for _ in range(106)] == [200] * 106

    with django_capture_on_commit_callbacks(execute=True):
        notification_settings_update(customer=capped, alerts_enabled=True, thresholds=[80, 100], spend_cap=Decimal("1.10"), cap_mode="stop")
    assert client.get(GEOCODE, HTTP_X_API_KEY=capped_key).status_code == 200


@pytest.mark.django_db
def test_switching_the_cap_to_alert_only_lifts_the_stop(django_capture_on_commit_callbacks):
    customer = CustomerFactory(plan=small_plan(), created_at=LONG_AGO)
    raw = api_key_issue(customer=customer, name="a").raw
    with django_capture_on_commit_callbacks(execute=True):
        notification_settings_update(customer=customer, alerts_enabled=False, thresholds=[], spend_cap=Decimal("1.00"), cap_mode="stop")
    client = APIClient()
    assert [client.get(GEOCODE, HTTP_X_API_KEY=raw).status_code for _ in range(101)] == [200] * 100 + [429]

    with django_capture_on_commit_callbacks(execute=True):
        notification_settings_update(customer=customer, alerts_enabled=False, thresholds=[], spend_cap=Decimal("1.00"), cap_mode="alert")

    assert client.get(GEOCODE, HTTP_X_API_KEY=raw).status_code == 200


@pytest.mark.django_db
def test_alerts_and_a_hard_stop_cap_keep_a_call_at_no_sql_and_one_redis_command(customer, client_with_key, redis_commands, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        notification_settings_update(customer=customer, alerts_enabled=True, thresholds=[50, 80, 100], spend_cap=Decimal("500"), cap_mode="stop")
    client_with_key.get(GEOCODE)  # warms the key cache and loads the script
    redis_commands.clear()
    with CaptureQueriesContext(connection) as queries:
        response = client_with_key.get(GEOCODE)

    assert response.status_code == 200
    assert [q["sql"] for q in queries] == []
    assert redis_commands == ["EVALSHA"]
