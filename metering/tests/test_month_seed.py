"""The month counter is rebuilt exactly: from Postgres plus what Redis holds unflushed, whatever
state the flush is in, and whenever a config is newer than the version Redis has seen."""
from __future__ import annotations

from itertools import combinations_with_replacement

import pytest
from django.db.models import F
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Customer
from core.redis import redis_client
from metering.keyconfig import key_config_forget_local
from metering.models import UsageRecord
from metering import services
from metering.services import month_counter_seed, usage_batch_apply, usage_batch_release, usage_batches_take
from metering.batcher import meter_commits_send

pytestmark = pytest.mark.django_db


def get(raw: str):
    return APIClient().get("/v1/geocode?q=Paris", HTTP_X_API_KEY=raw)


def month_key(customer) -> str:
    return f"tb:{{{customer.pk}}}:m:{timezone.now():%Y%m}"


def calls_then_commit(raw: str, n: int) -> None:
    assert [get(raw).status_code for _ in range(n)] == [200] * n
    meter_commits_send()


def seed(customer) -> int:
    return month_counter_seed(customer_id=customer.pk, day=timezone.now().date(),
                              version=Customer.objects.get(pk=customer.pk).config_version)


def test_a_rebuilt_counter_counts_postgres_pending_and_open_calls(customer, api_key):
    UsageRecord.objects.create(customer=customer, product="geocode", day=timezone.now().date(), calls=100)
    calls_then_commit(api_key.raw, 3)  # pending in Redis
    assert get(api_key.raw).status_code == 200  # open: answered, its commit not sent yet
    assert seed(customer) == 104


def test_a_batch_taken_but_not_applied_is_counted_from_redis(customer, api_key):
    calls_then_commit(api_key.raw, 3)
    usage_batches_take(customer_ids=[customer.pk])  # in flight; Postgres does not have it yet
    assert seed(customer) == 3


def test_a_batch_applied_but_not_released_is_counted_once(customer, api_key):
    calls_then_commit(api_key.raw, 3)
    (customer_id, batch), = usage_batches_take(customer_ids=[customer.pk])
    usage_batch_apply(customer_id=customer_id, batch=batch)  # Postgres has it; Redis still holds it
    assert seed(customer) == 3


def test_a_config_newer_than_redis_knows_rebuilds_the_month_counter(free_customer, free_plan):
    """A worker counted calls in Postgres during an outage and died before telling Redis: the
    raised version alone makes the next call rebuild the counter, so the hard cap holds."""
    from accounts.services import api_key_issue

    raw = api_key_issue(customer=free_customer, name="k").raw
    UsageRecord.objects.create(customer=free_customer, product="geocode", day=timezone.now().date(),
                               calls=free_plan.included_calls - 3)
    calls_then_commit(raw, 2)  # the counter in Redis: included - 1
    UsageRecord.objects.filter(customer=free_customer).update(calls=F("calls") + 1)  # counted in Postgres
    Customer.objects.filter(pk=free_customer.pk).update(config_version=F("config_version") + 1)
    key_config_forget_local()
    response = get(raw)
    assert response.status_code == 429 and response.json()["code"] == "quota_exceeded"
    assert int(redis_client().get(month_key(free_customer))) == free_plan.included_calls


class SteppedFlush:
    """One customer's flush, a step at a time: take (Redis), apply (Postgres), done (Redis)."""

    def __init__(self, customer_id: int) -> None:
        self.customer_id, self.batch, self.done = customer_id, None, 0

    def step(self) -> None:
        if self.done == 0:
            [(_, self.batch)] = usage_batches_take(customer_ids=[self.customer_id])
        elif self.done == 1:
            usage_batch_apply(customer_id=self.customer_id, batch=self.batch)
        else:
            usage_batch_release(customer_id=self.customer_id, flush_id=self.batch["__id"])
        self.done += 1


# Where each of the flush's three steps runs against the rebuild's three (learn the flush state
# in Redis, read Postgres, write in Redis): 0 before it starts, 1 between learning and reading,
# 2 between reading and writing, 3 after. Every order the two can interleave in.
INTERLEAVINGS = list(combinations_with_replacement(range(4), 3))


@pytest.mark.parametrize("slots", INTERLEAVINGS, ids=["".join(map(str, s)) for s in INTERLEAVINGS])
def test_a_rebuild_racing_a_flush_counts_its_batch_exactly_once(customer, api_key, monkeypatch, slots):
    UsageRecord.objects.create(customer=customer, product="geocode", day=timezone.now().date(), calls=100)
    calls_then_commit(api_key.raw, 3)  # pending: the batch the flush moves
    assert get(api_key.raw).status_code == 200  # open
    flush = SteppedFlush(customer.pk)
    snapshot = services.usage_month_snapshot
    reads = []

    def flush_steps_at(slot: int) -> None:
        for _ in range(slots.count(slot)):
            flush.step()

    def read_between_flush_steps(**kwargs):
        # The rebuild retries when a flush moved on: only its first read is interleaved.
        first = not reads
        if first:
            flush_steps_at(1)
        reads.append(snapshot(**kwargs))
        if first:
            flush_steps_at(2)
        return reads[-1]

    monkeypatch.setattr(services, "usage_month_snapshot", read_between_flush_steps)
    flush_steps_at(0)
    assert seed(customer) == 104
    flush_steps_at(3)
    assert flush.done == 3
    assert int(redis_client().get(month_key(customer))) == 104
