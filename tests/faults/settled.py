"""What the fault tests read once gunicorn's workers have sent their answers: the calls billed in
Postgres, settled (commits travel in batches every METERING_COMMIT_SECONDS, a lease's unused part
returns on its own); and the customer they race on a hard cap."""
from __future__ import annotations

import time
from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from accounts.services import api_key_issue

from metering.models import UsageRecord
from metering.services import usage_flush
from tests.factories import CustomerFactory, seeded_plan

LONG_AGO = datetime(2020, 1, 1, tzinfo=dt_timezone.utc)  # a customer since before this month


def free_key_short_of_its_cap(calls_left: int):
    """(customer, raw key) on Free, `calls_left` calls short of its hard monthly cap, with a rate
    limit no race reaches: the cap is the limit that races."""
    plan = seeded_plan("free")
    plan.rate_per_minute = 100_000
    plan.save()
    customer = CustomerFactory(plan=plan, created_at=LONG_AGO)
    UsageRecord.objects.create(customer=customer, product="geocode", day=timezone.now().date(),
                               calls=plan.included_calls - calls_left)
    return customer, api_key_issue(customer=customer, name="k").raw


def billed(customer) -> int:
    return UsageRecord.objects.filter(customer=customer).aggregate(s=Sum("calls"))["s"] or 0


def billed_once_settled(customer, *, timeout: float = 20) -> int:
    """Billed calls once the running workers have sent what they answered: flush until the sum has
    not moved for three batch periods. The open-call age limit is far off, so no call a live worker
    still holds is released."""
    quiet = 3 * settings.METERING_COMMIT_SECONDS
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        usage_flush()
        now, current = time.monotonic(), billed(customer)
        if current != last:
            last, since = current, now
        elif now - since >= quiet:
            return current
        assert now < deadline, f"billed calls still moving after {timeout}s"
        time.sleep(0.1)
