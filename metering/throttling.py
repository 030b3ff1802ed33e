from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.throttling import BaseThrottle

from accounts.ratelimit import Attempt, attempt_count

from . import testmode
from .meter import MeteringUnavailable, Outcome, meter_call
from .permissions import access_check, upgrade_fields


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


def throttled_error(request, wait: float | None) -> exceptions.APIException:
    """The exception a metered view's throttled() raises for a call PlanThrottle refused."""
    refusal = getattr(request, "meter_refusal", None)
    if refusal is not None:
        return refusal
    result = request.meter
    if result.outcome == Outcome.QUOTA_EXCEEDED:
        return QuotaExceeded(wait=wait, product=result.product, included_calls=result.config.included_calls)
    return REFUSALS.get(result.outcome, RateLimited)(wait=wait)


class PlanThrottle(BaseThrottle):
    """Per-plan limit, hard cap, spend cap and count in one Lua call (README "The metered API").

    DRF's own throttles read then write the cache and are "open to race conditions"; the
    script does check-and-reserve atomically, so the limit is exact under concurrency. As any
    DRF throttle, it only says no: wait() gives Retry-After and the view's throttled() raises
    the error (throttled_error), including the refusals met while metering: metering
    unavailable, or a config reloaded mid-call that no longer passes (key revoked meanwhile).
    """

    def allow_request(self, request, view) -> bool:
        product = view.product
        self.result = None
        try:
            self.result = meter_call(
                config=request.auth, raw_key=request.raw_api_key, product=product,
                revalidate=lambda config: access_check(config, product, raw_key=request.raw_api_key),
            )
        except MeteringUnavailable:
            request.meter_refusal = ServiceUnavailable()
            return False
        except exceptions.APIException as refusal:
            request.meter_refusal = refusal
            return False
        request.meter = self.result
        request.auth = self.result.config
        return self.result.allowed

    def wait(self) -> float | None:
        return self.result.retry_after if self.result is not None else None


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
