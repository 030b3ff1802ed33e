from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.throttling import BaseThrottle

from accounts.ratelimit import Attempt, attempt_count

from . import testmode
from .meter import MeterResult, Outcome
from .permissions import upgrade_fields


class RateLimited(exceptions.Throttled):
    default_detail = "Rate limit exceeded"
    default_code = "rate_limited"

    def __init__(self, wait: float | None):
        super().__init__(wait=wait, detail=self.default_detail, code=self.default_code)
        self.detail = exceptions.ErrorDetail(self.default_detail, self.default_code)


class QuotaExceeded(RateLimited):
    default_detail = "Monthly quota exceeded. Upgrade your plan."
    default_code = "quota_exceeded"

    def __init__(self, wait: float | None, *, product: str, included_calls: int):
        super().__init__(wait=wait)
        self.extra = upgrade_fields(product=product, more_calls_than=included_calls)


class SpendCapReached(RateLimited):
    default_detail = "Spend cap reached"
    default_code = "spend_cap"


class TestDayLimitReached(RateLimited):
    default_detail = f"Test-mode limit reached: {testmode.PER_DAY:,} calls a day across your test keys. Use a live key."
    default_code = "test_day_limit"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Metering is unavailable; try again shortly"
    default_code = "metering_unavailable"


REFUSALS = {
    Outcome.RATE_LIMITED: RateLimited,
    Outcome.SPEND_CAP: SpendCapReached,
    Outcome.TEST_DAY_LIMIT: TestDayLimitReached,
}


def meter_refusal(result: MeterResult) -> exceptions.APIException:
    """The 429 for a call the meter refused, with its Retry-After (metering/gate.py)."""
    if result.outcome == Outcome.QUOTA_EXCEEDED:
        return QuotaExceeded(wait=result.retry_after, product=result.product,
                             included_calls=result.config.included_calls)
    return REFUSALS.get(result.outcome, RateLimited)(wait=result.retry_after)


class UsageReadThrottle(BaseThrottle):
    """/v1/usage is free but not unlimited: USAGE_API_PER_MINUTE calls per customer, all its
    keys together, in a fixed one-minute window (one Redis round trip, no SQL)."""

    def allow_request(self, request, view) -> bool:
        self.attempt = attempt_count(scope="v1-usage", ident=str(request.auth.customer_id),
                                     limit=settings.USAGE_API_PER_MINUTE, window_seconds=60)
        return not self.attempt.limited

    def wait(self) -> float | None:
        attempt: Attempt | None = getattr(self, "attempt", None)
        return attempt.retry_after if attempt is not None else None
