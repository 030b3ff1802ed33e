"""The hot-path budget, counted on the real Redis client (tests/redis_budget.py): at most one
Redis command on any call's request path, and with quota leases (METERING_LEASES) at most one
command per ten calls in all, background sends included, for a customer far from its limits
(README "The metered API", "Benchmarks")."""
from __future__ import annotations

import threading
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.models import Customer
from accounts.services import api_key_issue
from metering.services import usage_limits_set
from plans.models import Plan
from tests.factories import CustomerFactory
from tests.redis_budget import count_redis_commands

pytestmark = pytest.mark.django_db

GEOCODE = "/v1/geocode?q=Oslo"
AMORTISED_CALLS = 1_000


def leases_on() -> bool:
    return bool(getattr(settings, "METERING_LEASES", False))


def customer_key(**plan_fields) -> tuple[Customer, str]:
    """A customer on a plan of its own (by default far from every limit) and its key."""
    fields = {**dict(slug="budget", name="Budget", price=Decimal("0"), included_calls=10**9,
                     overage_price=Decimal("0"), rate_per_minute=10**6, entitlements=["geocode"]), **plan_fields}
    customer = CustomerFactory(plan=Plan.objects.create(**fields),
                               created_at=datetime(2020, 1, 1, tzinfo=dt_timezone.utc))
    return customer, api_key_issue(customer=customer, name="budget").raw


@pytest.fixture
def redis_counter(monkeypatch):
    return count_redis_commands(monkeypatch)


def on_path(redis_counter, client: APIClient, raw: str, path: str = GEOCODE) -> tuple[int, list[str]]:
    """(status, the Redis commands the request's own thread sent while serving it)."""
    mark = redis_counter.mark()
    response = client.get(path, HTTP_X_API_KEY=raw)
    return response.status_code, redis_counter.since(mark, thread=threading.get_ident())


@pytest.mark.parametrize("leases", [False, True], ids=["per-call", "leases"])
def test_every_call_far_from_the_limits_sends_at_most_one_redis_command_on_its_path(redis_counter, settings, leases):
    settings.METERING_LEASES = leases
    (_, raw), client = customer_key(), APIClient()
    client.get(GEOCODE, HTTP_X_API_KEY=raw)  # warms the key cache and loads the script
    calls = [on_path(redis_counter, client, raw) for _ in range(200)]

    assert {status for status, _ in calls} == {200}
    assert max(len(commands) for _, commands in calls) <= 1
    if not leases_on():  # each call asks Redis once
        assert all(commands == ["EVALSHA"] for _, commands in calls)


@pytest.mark.parametrize("leases", [False, True], ids=["per-call", "leases"])
@pytest.mark.parametrize("limit", ["rate", "quota", "spend_cap"])
def test_calls_up_to_a_limit_and_refused_past_it_send_at_most_one_redis_command_on_their_path(
    redis_counter, limit, django_capture_on_commit_callbacks, settings, leases
):
    settings.METERING_LEASES = leases
    plan_fields = {"rate": dict(rate_per_minute=20), "quota": dict(included_calls=20, hard_cap=True),
                   "spend_cap": {}}[limit]
    customer, raw = customer_key(**plan_fields)
    client = APIClient()
    if limit == "spend_cap":
        with django_capture_on_commit_callbacks(execute=True):
            usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=20)
    client.get(GEOCODE, HTTP_X_API_KEY=raw)  # the first of the 20
    calls = [on_path(redis_counter, client, raw) for _ in range(30)]

    assert [status for status, _ in calls] == [200] * 19 + [429] * 11
    assert max(len(commands) for _, commands in calls) <= 1


@pytest.mark.parametrize("leases", [False, True], ids=["per-call", "leases"])
def test_a_call_accepted_then_answered_4xx_is_released_within_the_budget_with_leases(redis_counter, settings, leases):
    settings.METERING_LEASES = leases
    (_, raw), client = customer_key(), APIClient()
    client.get(GEOCODE, HTTP_X_API_KEY=raw)
    status, commands = on_path(redis_counter, client, raw, "/v1/geocode")  # no q: 400, not billed

    assert status == 400
    if leases_on():  # the unused unit goes back to the worker's lease
        assert len(commands) <= 1
    else:  # the per-call path releases it at once: a second round trip, for non-2xx answers only
        assert commands == ["EVALSHA", "EVALSHA"]


def test_1000_calls_far_from_the_limits_cost_at_most_one_redis_command_per_ten_calls_in_all(redis_counter, settings):
    settings.METERING_LEASES = True  # the amortised budget is what quota leases promise
    (_, raw), client = customer_key(), APIClient()
    client.get(GEOCODE, HTTP_X_API_KEY=raw)
    quiet = 3 * settings.METERING_COMMIT_SECONDS
    redis_counter.wait_quiet(quiet)
    mark = redis_counter.mark()
    statuses = [client.get(GEOCODE, HTTP_X_API_KEY=raw).status_code for _ in range(AMORTISED_CALLS)]
    # Everything the calls cost, the commit batches and the leases' returns included.
    redis_counter.wait_quiet(quiet)
    sent = redis_counter.since(mark)

    assert statuses == [200] * AMORTISED_CALLS
    assert len(sent) <= AMORTISED_CALLS / 10, f"{len(sent)} commands: {sorted(set(sent))}"
