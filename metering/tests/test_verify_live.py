"""The verify API against real gunicorn workers: a service verifies and settles over HTTP, and the
limit and once-only settling hold across processes."""
from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Sum
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from metering.keyconfig import key_config_forget_local
from metering.models import UsageRecord
from metering.services import usage_flush
from plans.services import product_create
from tests.factories import CustomerFactory, seeded_plan
from tests.servers import Gunicorn, RedisServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MAX_SECONDS = 2


def billed(customer) -> int:
    usage_flush()
    return UsageRecord.objects.filter(customer=customer, product="routing").aggregate(s=Sum("calls"))["s"] or 0


def test_verify_and_settle_through_real_workers(settings):
    plan = seeded_plan("starter")
    plan.rate_per_minute = 30
    plan.save()
    _, token, _ = product_create(slug="routing", name="Routing", upstream_url="http://127.0.0.1:9/api", plans=[plan])
    customer = CustomerFactory(plan=plan)
    raw = api_key_issue(customer=customer, name="k").raw
    settings.METERING_CALL_MAX_SECONDS = MAX_SECONDS
    with Gunicorn(workers=2, threads=8, env={"METERING_CALL_MAX_SECONDS": str(MAX_SECONDS)}) as server, \
            requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {token}"

        def verify(settle: str = "now") -> dict:
            response = http.post(f"{server.url}/v1/verify", json={"key": raw, "settle": settle}, timeout=30)
            assert response.status_code == 200, response.text
            return response.json()

        def settle(call: str, status: int) -> int:
            return http.post(f"{server.url}/v1/calls/{call}/settle", json={"status": status}, timeout=30).status_code

        # Now: 10 calls billed as they are verified.
        assert all(verify()["valid"] for _ in range(10))
        # Later, settled 200 by 16 racing threads on two workers: billed once.
        call = verify("later")["call"]
        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(lambda _: settle(call, 200), range(16)))
        assert sorted(statuses) == [200] + [409] * 15
        # Later, settled 502: released.
        assert settle(verify("later")["call"], 502) == 200
        # Later and never settled: released once it is older than METERING_CALL_MAX_SECONDS.
        forgotten = verify("later")["call"]
        # The rate limit holds across workers: 13 calls so far, 17 more fit in the minute.
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda _: verify(), range(30)))
        assert sum(a["valid"] for a in answers) == 17
        assert {a["code"] for a in answers if not a["valid"]} == {"rate_limited"}
        time.sleep(MAX_SECONDS + 0.5)
        assert settle(forgotten, 200) == 410
        time.sleep(1)  # the workers' batched commits of the "now" calls
    assert billed(customer) == 10 + 1 + 17


@pytest.fixture
def own_redis(settings, tmp_path):
    with RedisServer(tmp_path) as server:
        caches = copy.deepcopy(settings.CACHES)
        caches["default"]["LOCATION"] = server.url
        settings.CACHES = caches  # Django resets its cache connections on this change
        yield server


def test_with_redis_gone_a_verify_is_answered_and_billed_at_once_and_settling_waits(own_redis):
    """Metering fails open into Postgres, where nothing can hold a call open: "later" is billed
    at once and the answer carries no call; a settle meanwhile is a 503 to retry."""
    plan = seeded_plan("starter")
    _, token, _ = product_create(slug="routing", name="Routing", upstream_url="http://127.0.0.1:9/api", plans=[plan])
    customer = CustomerFactory(plan=plan)
    raw = api_key_issue(customer=customer, name="k").raw
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    call = client.post("/v1/verify", {"key": raw, "settle": "later"}, format="json").json()["call"]
    own_redis.kill()
    key_config_forget_local()
    response = client.post("/v1/verify", {"key": raw, "settle": "later"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["valid"], body["code"], body["call"]) == (True, None, None)
    assert UsageRecord.objects.filter(customer=customer, product="routing").aggregate(s=Sum("calls"))["s"] == 1
    response = client.post(f"/v1/calls/{call}/settle", {"status": 200}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "metering_unavailable"
