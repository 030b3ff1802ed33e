from __future__ import annotations

from datetime import datetime, timezone

import pytest
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from core.redis import redis_state_reset
from metering.keyconfig import key_config_forget_local
from plans.selectors import plan_offers_forget, products_forget

from .factories import CustomerFactory, seeded_plan


@pytest.fixture(autouse=True)
def clean_redis():
    """Each test starts with an empty test Redis database and cold in-process caches."""
    get_redis_connection("default").flushdb()
    _outage_forget()
    yield
    _outage_forget()


def _outage_forget() -> None:
    # No recovery callbacks here: they would publish a finished test's leftovers.
    key_config_forget_local()
    redis_state_reset()  # and the outage notes
    plan_offers_forget()
    products_forget()


@pytest.fixture
def free_plan(db):
    return seeded_plan("free")


@pytest.fixture
def starter_plan(db):
    return seeded_plan("starter")


SINCE_LAST_YEAR = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def customer(db, starter_plan):
    """On Starter since before this month: its run is the whole month, all 50,000 calls included
    (a customer signed up today gets today's share of them, README "Billing")."""
    return CustomerFactory(plan=starter_plan, created_at=SINCE_LAST_YEAR)


@pytest.fixture
def free_customer(db, free_plan):
    return CustomerFactory(plan=free_plan, created_at=SINCE_LAST_YEAR)


@pytest.fixture
def api_key(customer):
    """An IssuedKey: `.raw` is the key the customer would paste, `.key` the stored row."""
    return api_key_issue(customer=customer, name="test key")


@pytest.fixture
def client_with_key(api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.raw}")
    return client


# The embedded Stripe (localstripe) and its webhook target, for billing and browser tests.
from .payments import celery_outside_task, stripe_server, stripe_webhooks  # noqa: E402,F401


@pytest.fixture(autouse=True)
def celery_join_flag_kept():
    """Eager tasks started from several threads at once race on Celery's process-wide "inside a
    task" flag and can leave it set, which breaks every later `.get()`: put it back after each test."""
    from celery import _state

    before = _state.task_join_will_block()
    yield
    _state._set_task_join_will_block(before)


@pytest.fixture
def redis_commands(monkeypatch) -> list:
    """The name of every command this process sends to Redis from now on (the hot-path budget)."""
    import redis

    sent: list = []
    original = redis.connection.AbstractConnection.send_command

    def counting(self, *args, **kwargs):
        sent.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_command", counting)
    return sent
