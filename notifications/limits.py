"""How often a customer may make us POST to their endpoint (README "Alerts, spend caps and webhooks").

"Send test event" and "Resend" share one budget per customer, a minute's and a day's, so the
portal cannot be used to flood a third party's URL. Every delivery, automatic or manual, also
counts against its endpoint's minute: one over it waits for the next minute instead of going out.

Windows are clock buckets (this UTC minute, this UTC day) counted with the forms' limiter, which
lets everything through while Redis is down rather than stopping webhooks with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.ratelimit import attempt_count

MANUAL_PER_MINUTE = 10
MANUAL_PER_DAY = 100
ENDPOINT_DELIVERIES_PER_MINUTE = 60


class SendLimited(Exception):
    """The customer used up its manual sends for now; the message says until when."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Window:
    ident: str
    retry_after: int  # seconds until the bucket ends


def manual_send_count(*, customer_id: int, now: datetime | None = None) -> None:
    """Count one test event or resend; raises SendLimited past the minute's or the day's budget."""
    now = now or timezone.now()
    minute = _minute(customer_id, now)
    if attempt_count(scope="webhook-manual-minute", ident=minute.ident, limit=MANUAL_PER_MINUTE, window_seconds=60).limited:
        raise SendLimited(
            f"You can send at most {MANUAL_PER_MINUTE} test events and resends a minute. "
            f"Try again in {minute.retry_after} s.", retry_after=minute.retry_after)
    day = _day(customer_id, now)
    if attempt_count(scope="webhook-manual-day", ident=day.ident, limit=MANUAL_PER_DAY, window_seconds=86400).limited:
        raise SendLimited(
            f"You can send at most {MANUAL_PER_DAY} test events and resends a day. "
            "Try again after midnight UTC; automatic deliveries go on meanwhile.", retry_after=day.retry_after)


def endpoint_delivery_wait(*, endpoint_id: int, now: datetime | None = None) -> int:
    """Count one delivery to the endpoint: 0 when it may go now, else seconds to wait for."""
    minute = _minute(endpoint_id, now or timezone.now())
    counted = attempt_count(scope="webhook-endpoint", ident=minute.ident, limit=ENDPOINT_DELIVERIES_PER_MINUTE,
                            window_seconds=60)
    return minute.retry_after if counted.limited else 0


def _minute(owner: int, now: datetime) -> Window:
    start = now.replace(second=0, microsecond=0)
    left = (start + timedelta(minutes=1) - now).total_seconds()
    return Window(f"{owner}:{start:%Y%m%d%H%M}", max(1, int(-(-left // 1))))


def _day(owner: int, now: datetime) -> Window:
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    left = (start + timedelta(days=1) - now).total_seconds()
    return Window(f"{owner}:{start:%Y%m%d}", max(1, int(-(-left // 1))))
