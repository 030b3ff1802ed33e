"""Exactness across processes, whether each call asks Redis or a worker admits calls from a
quota lease it holds (README "The metered API"; METERING_LEASES): gunicorn with 3 processes of
8 threads, clients in several processes, every limit judged from the answers the clients got
and from what Postgres bills after the flush.

The client-side clock brackets each call (tests/faults/api_load.py): an upper bound counts only
calls certainly inside a window, a lower bound every call possibly inside it, so request latency
never makes a test pass or fail by itself.
"""
from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from accounts.services import api_key_issue
from metering.services import usage_flush
from notifications.services import notification_settings_update
from plans.models import Plan
from tests.factories import CustomerFactory
from tests.servers import Gunicorn

from .api_load import (fewest_possibly_in_any_window, fire_at_once, most_certainly_in_any_window, paced,
                       wait_until_serving)
from .settled import LONG_AGO, billed, billed_once_settled, free_key_short_of_its_cap

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]



def server(leases: str | None = None) -> Gunicorn:
    return Gunicorn(workers=3, threads=8, env={} if leases is None else {"METERING_LEASES": leases})


@pytest.fixture(scope="module", params=["false", "true"], ids=["per-call", "leases"])
def shared_server(request, django_db_setup):
    """One server per setting of METERING_LEASES for the short tests (booting 3 workers costs
    seconds); each test has a customer and keys of its own, and Redis is emptied between tests."""
    with server(request.param) as gunicorn:
        wait_until_serving(gunicorn)
        yield gunicorn


def outcomes(answers) -> Counter:
    return Counter((a.status, a.code) for a in answers)


def test_a_1000_a_minute_plan_accepts_between_990_and_1000_in_every_minute_for_70_seconds():
    # Only the rate limit can refuse: a month far from its quota, no cap.
    plan = Plan.objects.create(slug="per-minute-1000", name="1,000 a minute", price=Decimal("0"),
                               included_calls=10**9, overage_price=Decimal("0"), rate_per_minute=1_000,
                               entitlements=["geocode"])
    customer = CustomerFactory(plan=plan)
    raw = api_key_issue(customer=customer, name="k").raw
    # Leases on: the path where a block of calls could cross a window's edge (the per-call path
    # passes it too, and is held exact by the shorter tests of both settings).
    with server("true") as gunicorn:
        wait_until_serving(gunicorn)
        # 60 calls a second, 3.6x the limit, on a fixed schedule from 3 client processes: the first
        # 1,000 are taken in the first 17 s, and from the 60th second each place leaving the
        # window is taken again by one of the next calls, 17 ms apart.
        answers = paced(f"{gunicorn.url}/v1/geocode?q=Paris", raw, per_second=60, seconds=70)
    usage_flush()  # the workers billed what they answered as they stopped

    counts = outcomes(answers)
    accepted = [a for a in answers if a.status == 200]
    assert set(counts) == {(200, ""), (429, "rate_limited")}, counts
    assert most_certainly_in_any_window(accepted, 60) <= 1_000
    first, last = min(a.sent for a in answers), max(a.sent for a in answers)
    assert last - first > 69
    # Every window of 60 s inside the 70 s the clients stayed above the limit.
    fewest, at = fewest_possibly_in_any_window(accepted, 60, first=first, last=last - 60)
    assert fewest >= 990, (f"{fewest} in the window from {at - first:.2f} s; accepted per second: "
                           f"{sorted(Counter(int(a.sent - first) for a in accepted).items())}")
    assert billed(customer) == len(accepted)


def test_free_at_995_calls_and_200_at_once_accepts_exactly_5(shared_server):
    customer, raw = free_key_short_of_its_cap(5)
    included = customer.plan.included_calls
    answers = fire_at_once(f"{shared_server.url}/v1/geocode?q=Paris", raw, 200)

    assert outcomes(answers) == {(200, ""): 5, (429, "quota_exceeded"): 195}
    assert billed_once_settled(customer) == included


def test_a_hard_stop_spend_cap_stops_at_exactly_its_call(shared_server, django_capture_on_commit_callbacks):
    # $1 a month with 100 calls, then a cent a call: a $1.50 hard stop is the 150th call.
    plan = Plan.objects.create(slug="capped-small", name="Capped small", price=Decimal("1.00"), included_calls=100,
                               overage_price=Decimal("0.01"), rate_per_minute=100_000, entitlements=["geocode"])
    customer = CustomerFactory(plan=plan, created_at=LONG_AGO)
    raw = api_key_issue(customer=customer, name="k").raw
    with django_capture_on_commit_callbacks(execute=True):
        notification_settings_update(customer=customer, alerts_enabled=False, thresholds=[],
                                     spend_cap=Decimal("1.50"), cap_mode="stop")
    answers = fire_at_once(f"{shared_server.url}/v1/geocode?q=Paris", raw, 200)

    assert outcomes(answers) == {(200, ""): 150, (429, "spend_cap"): 50}
    assert billed_once_settled(customer) == 150
