"""What the fault tests read once gunicorn's workers have sent their answers: the calls billed in
Postgres, settled (commits travel in batches every METERING_COMMIT_SECONDS, a lease's unused part
returns on its own)."""
from __future__ import annotations

import time

from django.conf import settings
from django.db.models import Sum

from metering.models import UsageRecord
from metering.services import usage_flush


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
