"""What /v1/docs/ says about the verify API (README "Sell your own API"): one `extend_schema`
per view method of VerifyApi and CallSettleApi in metering/apis.py. Read by the services that
sell through Tollbooth: say what they send and get back, never how it is built."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers

from .api_docs import error_example, errors_described, ok_example
from .serializers import CallSettleInput, VerifyInput

SERVICE_ERROR_EXAMPLES = [
    error_example("Bad service token", 401, "Invalid service token", "invalid_service_token"),
    error_example("Try again shortly", 503, "Metering is unavailable; try again shortly", "metering_unavailable"),
]
RATELIMIT_EXAMPLE = {"limit": 100, "remaining": 99, "reset": 60}
CALL_EXAMPLE = "call_42_9f86d081884c7d659a2feaa0c55ad015"
BAD_INPUT = "Bad input; `fields` names each problem."
BAD_TOKEN = "`Invalid service token`: missing, unknown, rotated, or its product is inactive."
TOO_MANY_TOKENS = "`Too many invalid service tokens from this address`, with Retry-After."


class VerifyOutput(serializers.Serializer):
    valid = serializers.BooleanField(help_text="Whether the customer may make this call: serve it if true.")
    code = serializers.CharField(allow_null=True, help_text=(
        "Null when valid; otherwise the refusal the API would give: `invalid_api_key`, `account_cancelled`, "
        "`payment_required`, `not_entitled`, `rate_limited`, `quota_exceeded` or `spend_cap`."
    ))
    customer = serializers.IntegerField(allow_null=True, help_text=(
        "The key's customer id; null for an unknown key."
    ))
    plan = serializers.CharField(allow_null=True, help_text="The customer's plan; null for an unknown key.")
    call = serializers.CharField(allow_null=True, help_text=(
        "With `settle: later` on a valid key: the id to settle the call with. Null otherwise, and when the "
        "call could not be held open (it was then billed at once)."
    ))
    ratelimit = serializers.DictField(help_text=(
        "`limit` calls per 60 seconds, `remaining` in the window, `reset` seconds until one frees up; "
        "null members when the call was refused before it was counted."
    ))
    quota = serializers.DictField(help_text=(
        "`limit` calls included this month and `remaining` of them; null members when the call was refused "
        "before it was counted."
    ))


verify = extend_schema(
    operation_id="verify", summary="Verify a customer's key and meter one call", tags=["Verify"],
    description=(
        "For the services you sell through Tollbooth that keep their own edge: authenticate with your product's "
        "service token (`Authorization: Bearer tbs_…`), send the key your customer gave you, and serve the "
        "call only when `valid` is true. The key is checked, limited and counted exactly as a call through "
        "Tollbooth would be. A refused key is still a 200 answer, with `valid: false` and the refusal `code`.\n\n"
        "```bash\ncurl -X POST \"$TOLLBOOTH_URL/v1/verify\" \\\n  -H \"Authorization: Bearer "
        "$TOLLBOOTH_SERVICE_TOKEN\" \\\n  -H \"Content-Type: application/json\" \\\n  -d '{\"key\": \"sk_live_…\", "
        "\"settle\": \"later\"}'\n```"
    ),
    request=VerifyInput,
    responses={200: VerifyOutput, **errors_described({
        400: BAD_INPUT,
        401: BAD_TOKEN,
        429: TOO_MANY_TOKENS,
        503: "Calls cannot be counted for a moment; nothing was counted. Retry shortly.",
    })},
    examples=[
        OpenApiExample("Bill at once", request_only=True, value={"key": "sk_live_3f…9a"}),
        OpenApiExample("Settle later", request_only=True, value={"key": "sk_live_3f…9a", "settle": "later"}),
        ok_example("Valid, billed", {
            "valid": True, "code": None, "customer": 42, "plan": "Starter", "call": None,
            "ratelimit": RATELIMIT_EXAMPLE, "quota": {"limit": 50000, "remaining": 48211}}),
        ok_example("Valid, settle later", {
            "valid": True, "code": None, "customer": 42, "plan": "Starter", "call": CALL_EXAMPLE,
            "ratelimit": RATELIMIT_EXAMPLE, "quota": {"limit": 50000, "remaining": 48210}}),
        ok_example("Rate limited", {
            "valid": False, "code": "rate_limited", "customer": 42, "plan": "Starter", "call": None,
            "ratelimit": {"limit": 100, "remaining": 0, "reset": 17},
            "quota": {"limit": 50000, "remaining": 48210}}),
        ok_example("Unknown key", {
            "valid": False, "code": "invalid_api_key", "customer": None, "plan": None, "call": None,
            "ratelimit": {"limit": None, "remaining": None, "reset": None},
            "quota": {"limit": None, "remaining": None}}),
        error_example("Missing key", 400, "Invalid input", "invalid_input",
                      fields={"key": ["This field is required."]}),
        *SERVICE_ERROR_EXAMPLES,
    ],
)


class CallSettleOutput(serializers.Serializer):
    call = serializers.CharField(help_text="The call settled.")
    billed = serializers.BooleanField(help_text="True when the call was billed (a 2xx status).")


call_settle = extend_schema(
    operation_id="call_settle", summary="Settle a call verified with settle: later", tags=["Verify"],
    description=(
        "Report the status your service answered a call with, once: a 2xx bills it, anything else releases "
        "it (not billed, but it keeps its place in the customer's 60-second rate limit). Settle within "
        f"{settings.METERING_CALL_MAX_SECONDS} seconds of the verify: a call not settled by then is released, "
        "not billed, and settling it answers 410 `call_expired`. Authenticate with the same product's "
        "service token.\n\n"
        "```bash\ncurl -X POST \"$TOLLBOOTH_URL/v1/calls/$CALL/settle\" \\\n  -H \"Authorization: Bearer "
        "$TOLLBOOTH_SERVICE_TOKEN\" \\\n  -H \"Content-Type: application/json\" \\\n  -d '{\"status\": 200}'\n```"
    ),
    request=CallSettleInput,
    parameters=[OpenApiParameter("call", str, OpenApiParameter.PATH, description=(
        f"The `call` id the verify answered, e.g. `{CALL_EXAMPLE}`."
    ))],
    responses={200: CallSettleOutput, **errors_described({
        400: BAD_INPUT,
        401: BAD_TOKEN,
        404: "`No such call for this product`: unknown, or another product's call.",
        409: "`This call was settled already`: nothing more is billed.",
        410: "`This call was not settled in time`: it was released, not billed.",
        429: TOO_MANY_TOKENS,
        503: "Calls cannot be settled for a moment; the call stays reserved. Retry shortly.",
    })},
    examples=[
        OpenApiExample("Served", request_only=True, value={"status": 200}),
        OpenApiExample("Failed", request_only=True, value={"status": 502}),
        ok_example("Billed", {"call": CALL_EXAMPLE, "billed": True}),
        ok_example("Released", {"call": CALL_EXAMPLE, "billed": False}),
        error_example("Bad status", 400, "Invalid input", "invalid_input",
                      fields={"status": ["Ensure this value is less than or equal to 599."]}),
        error_example("Unknown call", 404, "No such call for this product", "unknown_call"),
        error_example("Settled twice", 409, "This call was settled already", "already_settled"),
        error_example("Too late", 410, "This call was not settled in time and was released, not billed",
                      "call_expired"),
        *SERVICE_ERROR_EXAMPLES,
    ],
)
