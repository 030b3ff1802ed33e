"""The metered routes' gate: the key, the account's standing and the meter in one step.

DRF runs authentication, permissions and throttles as three hooks, building their classes anew
on every request. On a metered call that machinery cost about as much as the meter itself, so
the built-in products' views and the gateway run this gate from DRF's authentication hook
instead, with no permission or throttle classes (docs/decisions.md, "One gate for metered
routes"). Its refusals are the exceptions the hooks raised, answered by DRF as before: 401
`api_key_required` / `invalid_api_key` / `key_revoked`, 403 `account_cancelled` / `not_entitled`,
402 `payment_required`, 429 `rate_limited` / `quota_exceeded` / `spend_cap` / `test_day_limit`
with Retry-After, 503 `metering_unavailable`.
"""
from __future__ import annotations

from rest_framework import exceptions

from .authentication import ApiKeyAuthentication, mode_header_set
from .meter import MeteringUnavailable, MeterResult, meter_call, meter_settle_when_sent
from .permissions import ApiKeyRequired, access_check
from .throttling import ServiceUnavailable, meter_refusal

_key_authentication = ApiKeyAuthentication()


class MeteredGate:
    """Mixin for an APIView billed per call: `product` is the slug the call is metered under.
    Every answer to a metered call carries the usage headers, and its call is settled once the
    answer is out (metering/meter.py)."""

    product: str = ""
    # The class stays listed: DRF builds the 401's WWW-Authenticate from it, and the schema its
    # security scheme.
    authentication_classes = [ApiKeyAuthentication]
    permission_classes: list = []
    throttle_classes: list = []

    def perform_authentication(self, request) -> None:
        metered_admit(request, product=self.product)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        mode_header_set(request, response)
        result = getattr(request, "meter", None)
        if result is not None:
            if not response.streaming:  # a streamed answer (the gateway's) settles as it closes
                # Only a 2xx is billed; a 4xx or 5xx is released (README "The metered API").
                meter_settle_when_sent(result=result, response=response)
            response["X-RateLimit-Limit"] = result.rate_limit
            response["X-RateLimit-Remaining"] = result.rate_remaining
            response["X-RateLimit-Reset"] = result.rate_reset_seconds
            response["X-Quota-Limit"] = result.quota_limit
            response["X-Quota-Remaining"] = result.quota_remaining
        return response


def metered_admit(request, *, product: str) -> MeterResult:
    """Authenticate the key, check the account, meter the call (README "The metered API"), or
    raise the refusal. Sets request.user, request.auth (the key's config, as the meter last saw
    it) and request.meter (what settling the call needs)."""
    try:
        found = _key_authentication.authenticate(request)
        if found is None:
            raise ApiKeyRequired()
    except exceptions.APIException:
        request.user = request.auth = None  # as DRF leaves a request whose authentication failed
        raise
    request.user, config = found
    request.auth = config
    # Standing before the meter, so a refused call is never counted. The entitlement is judged by
    # the meter script after its version check (metering/meter.py): a product just granted is
    # callable on the next call, not when this process's copy of the config expires.
    access_check(config, None)
    raw = request.raw_api_key
    try:
        result = meter_call(config=config, raw_key=raw, product=product,
                            revalidate=lambda fresh: access_check(fresh, product, raw_key=raw))
    except MeteringUnavailable:
        raise ServiceUnavailable() from None
    request.meter = result
    if result.config is not config:  # reloaded by the meter: the version it metered under
        request.auth = result.config
    if not result.allowed:
        raise meter_refusal(result)
    return result
