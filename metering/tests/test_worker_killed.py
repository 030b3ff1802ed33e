"""A worker killed mid-call (out of memory, or gunicorn's timeout) leaves no call billed."""
from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.db.models import Sum
from django.utils import timezone
from django_redis import get_redis_connection

from accounts.services import api_key_issue
from metering.models import UsageRecord
from metering.services import usage_flush
from metering.usage_fields import month_counter_key, open_calls_key, usage_batch_parse
from tests.factories import CustomerFactory, seeded_plan
from tests.faults.api_load import worker_pids
from tests.servers import Gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SERVER_SETTINGS = {"DJANGO_SETTINGS_MODULE": "metering.tests.settings_broken"}


def call(url: str, raw: str) -> tuple[int | None, dict]:
    request = urllib.request.Request(url, headers={"X-API-Key": raw})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)
    except OSError:
        return None, {}  # the worker died under the call


def wait_for(condition, what: str, timeout: float = 20) -> None:
    """Wait for another process to get somewhere (a bounded poll, as for a port to open)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def redis_state(customer_id: int) -> tuple[int, int, int]:
    """(open calls, calls waiting to be flushed, month counter) in Redis."""
    redis = get_redis_connection("default")
    day = timezone.now().date()
    pending = usage_batch_parse(redis.hgetall(f"tb:{{{customer_id}}}:pending"))
    month = redis.get(month_counter_key(customer_id=customer_id, day=day))
    return (redis.zcard(open_calls_key(customer_id=customer_id, day=day)), sum(pending.calls.values()),
            int(month or 0))


@pytest.mark.parametrize("kill", ["sigkill", "timeout"])
def test_a_call_whose_worker_dies_mid_call_is_never_billed(kill, settings):
    customer = CustomerFactory(plan=seeded_plan("starter"))
    raw = api_key_issue(customer=customer, name="k").raw
    # gunicorn's own timeout kills a sync worker stuck in a call (SIGABRT, then SIGKILL).
    # (gunicorn turns a sync worker with threads into gthread, whose timeout kills nothing.)
    args = ("--worker-class", "sync", "--timeout", "8") if kill == "timeout" else ()
    with Gunicorn(workers=1, threads=1 if args else 2, env=SERVER_SETTINGS, args=args) as server:
        good = f"{server.url}/v1/geocode?q=Paris"
        assert [call(good, raw)[0] for _ in range(2)] == [200, 200]
        wait_for(lambda: redis_state(customer.pk) == (0, 2, 2), "the two answered calls to be committed")

        hanging = threading.Thread(target=call, args=(f"{server.url}/v1/broken?mode=hang", raw), daemon=True)
        hanging.start()
        wait_for(lambda: redis_state(customer.pk) == (1, 2, 3), "the hanging call to be metered")
        if kill == "sigkill":  # as the kernel's OOM killer does: nothing runs in the worker
            [worker] = worker_pids(server.process.pid)
            os.kill(worker, signal.SIGKILL)
        hanging.join(timeout=30)
        assert not hanging.is_alive()

        # Until the flush releases it, the dead call holds its place (never more than the limit).
        assert redis_state(customer.pk) == (1, 2, 3)
        settings.METERING_CALL_MAX_SECONDS = 0
        usage_flush()
        assert redis_state(customer.pk) == (0, 0, 2)
        assert UsageRecord.objects.filter(customer=customer).aggregate(s=Sum("calls"))["s"] == 2
        # The dead call keeps its place in the per-minute window, as any released call
        # (all three calls are well within the last 60 seconds).
        assert get_redis_connection("default").zcard(f"tb:{{{customer.pk}}}:rl") == 3

        status, headers = call(good, raw)  # the respawned worker serves on
        assert status == 200
        assert headers["X-Quota-Remaining"] == str(customer.plan.included_calls - 3)
