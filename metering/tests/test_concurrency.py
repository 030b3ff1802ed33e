"""Exactness under real concurrency: gunicorn workers, client processes and threads."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import get_context

import pytest
from django.db.models import Sum

from accounts.services import api_key_issue, api_key_revoke
from metering.models import UsageRecord
from metering.services import usage_flush
from tests.factories import CustomerFactory, seeded_plan
from tests.servers import Gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _get(url: str, raw: str) -> int:
    request = urllib.request.Request(url, headers={"X-API-Key": raw})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _burst(args: tuple[str, str, int]) -> list[int]:
    url, raw, n = args
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda _: _get(url, raw), range(n)))


def fire(url: str, raw: str, total: int, processes: int = 3) -> list[int]:
    """`total` calls at once from several processes, each with several threads."""
    share = [total // processes + (i < total % processes) for i in range(processes)]
    with get_context("fork").Pool(processes) as pool:
        return [s for statuses in pool.map(_burst, [(url, raw, n) for n in share]) for s in statuses]


def usage(server: Gunicorn, raw: str) -> dict:
    request = urllib.request.Request(f"{server.url}/v1/usage", headers={"X-API-Key": raw})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_three_times_the_limit_at_once_gets_exactly_the_limit():
    plan = seeded_plan("starter")
    plan.rate_per_minute = 40
    plan.save()
    customer = CustomerFactory(plan=plan)
    raws = [api_key_issue(customer=customer, name=f"k{i}").raw for i in range(2)]
    with Gunicorn(workers=2, threads=8) as server:
        # Two keys of one customer, 120 calls at once: the limit holds across keys.
        statuses = fire(f"{server.url}/v1/geocode?q=Paris", raws[0], 60)
        statuses += fire(f"{server.url}/v1/geocode?q=Lyon", raws[1], 60)
        assert sorted(set(statuses)) == [200, 429]
        assert statuses.count(200) == 40
        assert usage(server, raws[0])["calls"] == 40
    usage_flush()
    assert UsageRecord.objects.filter(customer=customer).aggregate(s=Sum("calls"))["s"] == 40


def test_a_free_customer_never_exceeds_its_included_calls_however_many_race():
    plan = seeded_plan("free")
    plan.rate_per_minute = 1000  # let the quota, not the rate, be the limit that races
    plan.save()
    customer = CustomerFactory(plan=plan)
    raw = api_key_issue(customer=customer, name="k").raw
    UsageRecord.objects.create(customer=customer, product="geocode", day=_today(), calls=plan.included_calls - 15)
    with Gunicorn(workers=2, threads=8) as server:
        statuses = fire(f"{server.url}/v1/geocode?q=Paris", raw, 75)
        assert statuses.count(200) == 15
        assert statuses.count(429) == 60
        assert usage(server, raw)["calls"] == plan.included_calls
    usage_flush()
    assert UsageRecord.objects.filter(customer=customer).aggregate(s=Sum("calls"))["s"] == plan.included_calls


def test_a_revoked_key_is_refused_by_every_worker_within_5_seconds():
    customer = CustomerFactory(plan=seeded_plan("pro"))
    issued = api_key_issue(customer=customer, name="k")
    with Gunicorn(workers=2, threads=2) as server:
        url = f"{server.url}/v1/geocode?q=Paris"
        # Warm both workers' in-process caches with the key.
        assert set(_burst((url, issued.raw, 24))) == {200}
        api_key_revoke(key=issued.key)
        revoked_at = time.monotonic()
        while True:
            statuses = _burst((url, issued.raw, 16))
            if set(statuses) == {401}:
                break
            assert time.monotonic() - revoked_at < 5, statuses
        assert time.monotonic() - revoked_at < 5


def _today():
    from django.utils import timezone

    return timezone.now().date()
