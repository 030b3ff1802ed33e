from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.throttling import BaseThrottle

from .meter import MeteringUnavailable, Outcome, meter_call
from .permissions import access_check


class RateLimited(exceptions.Throttled):
    default_detail = "Rate limit exceeded"
    default_code = "rate_limited"

    def __init__(self, wait: int):
        super().__init__(wait=wait, detail=self.default_detail, code=self.default_code)
        self.detail = exceptions.ErrorDetail(self.default_detail, self.default_code)


class QuotaExceeded(RateLimited):
    default_detail = "Monthly quota exceeded. Upgrade your plan."
    default_code = "quota_exceeded"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Metering is unavailable; try again shortly"
    default_code = "metering_unavailable"


class PlanThrottle(BaseThrottle):
    """Per-plan limit, hard cap and count in one Lua call (DESIGN §4).

    DRF's own throttles read then write the cache and are "open to race conditions"; the
    script does check-and-count atomically, so the limit is exact under concurrency.
    """

    def allow_request(self, request, view) -> bool:
        product = view.product
        try:
            result = meter_call(
                config=request.auth, raw_key=request.raw_api_key, product=product,
                revalidate=lambda config: access_check(config, product),
            )
        except MeteringUnavailable:
            raise ServiceUnavailable()
        request.meter = result
        request.auth = result.config
        if result.outcome == Outcome.QUOTA_EXCEEDED:
            raise QuotaExceeded(wait=result.retry_after)
        if result.outcome == Outcome.RATE_LIMITED:
            raise RateLimited(wait=result.retry_after)
        return True

    def wait(self) -> float | None:
        return None
