"""A worker SIGKILLed while it serves a stream of calls (and holds quota leases, when
METERING_LEASES is on): no limit is overshot, no call is billed that was not answered 2xx, and
once the open-call age limit has passed the month's count and the bill agree again, so the
customer gets exactly the rest of its quota (README "The metered API")."""
from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from metering.services import usage_flush
from plans.models import Plan
from tests.factories import CustomerFactory
from tests.servers import Gunicorn

from .api_load import fire_at_once, hammer, wait_until_serving, worker_pids
from .settled import billed, billed_once_settled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

INCLUDED = 600
KILL_AFTER = 150  # accepted calls: far from the cap, where a lease would be large


@pytest.mark.parametrize("leases", ["false", "true"], ids=["per-call", "leases"])
def test_a_worker_killed_mid_stream_never_overshoots_the_cap_nor_bills_an_unanswered_call(leases, settings):
    plan = Plan.objects.create(slug="hard-600", name="Hard 600", price=Decimal("0"), included_calls=INCLUDED,
                               hard_cap=True, overage_price=Decimal("0"), rate_per_minute=100_000,
                               entitlements=["geocode"])
    customer = CustomerFactory(plan=plan, created_at=datetime(2020, 1, 1, tzinfo=dt_timezone.utc))
    raw = api_key_issue(customer=customer, name="k").raw
    env = {"METERING_LEASES": leases}
    with Gunicorn(workers=3, threads=8, env=env) as server:
        wait_until_serving(server)
        accepted, killed = [0], []
        lock = threading.Lock()

        def kill_one_worker_once(answer) -> None:
            # As the kernel's OOM killer does, while all three workers serve this customer.
            with lock:
                accepted[0] += answer.status == 200
                if accepted[0] >= KILL_AFTER and not killed:
                    killed.append(worker_pids(server.process.pid)[0])
                    os.kill(killed[0], signal.SIGKILL)

        answers = hammer(f"{server.url}/v1/geocode?q=Paris", raw, total=INCLUDED + 200, threads=24,
                         on_answer=kill_one_worker_once)
        counts = Counter((a.status, a.code) for a in answers)
        answered_2xx = counts[(200, "")]
        assert killed and set(counts) <= {(200, ""), (429, "quota_exceeded"), (None, "")}, counts
        assert KILL_AFTER <= answered_2xx <= INCLUDED

        # Once the surviving workers have sent what they answered: never more billed than answered.
        assert billed_once_settled(customer) <= answered_2xx
        # Past the open-call age limit the flush releases what the dead worker held, unbilled,
        # and the month's count is the bill again.
        age_limit, settings.METERING_CALL_MAX_SECONDS = settings.METERING_CALL_MAX_SECONDS, 0
        usage_flush()
        settings.METERING_CALL_MAX_SECONDS = age_limit  # the calls served next are live ones
        after_release = billed(customer)
        assert after_release <= answered_2xx
        assert APIClient().get("/v1/usage", HTTP_X_API_KEY=raw).json()["calls"] == after_release

        # What was released is the customer's again, to exactly the cap (the killed worker was
        # replaced meanwhile).
        rest = Counter((a.status, a.code) for a in fire_at_once(f"{server.url}/v1/geocode?q=Paris", raw, 300))
        assert sum(rest.values()) == rest[(200, "")] + rest[(429, "quota_exceeded")] == 300, rest
        assert rest[(200, "")] == INCLUDED - after_release
        assert billed_once_settled(customer) == INCLUDED
