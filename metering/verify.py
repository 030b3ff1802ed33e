"""The verify API (README "Sell your own API"), for services that keep their own edge: Unkey's verifyKey, 3scale's
authrep. The service sends its product's service token and a customer's key; Tollbooth answers
whether the call may go ahead and meters it with the same single round trip as its own views.

A refused key is still a 200 with `valid: false` and the refusal code the API would give: the
service asked a question and got an answer. The call is billed at once (`settle: now`), or kept
reserved (`settle: later`) until the service reports its answer's status on
`POST /v1/calls/<call>/settle`: a 2xx bills it, anything else releases it, and a call not settled
within METERING_CALL_MAX_SECONDS is released, unbilled, like a call whose worker died.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass

from cachetools import TTLCache
from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.keyformat import key_is_well_formed
from accounts.ratelimit import attempt_count, attempt_peek, client_ip
from plans.models import Product
from plans.services import product_by_token, service_token_hash

from . import connection
from .apis import ErrorSerializer, StrictCharField, error_example, ok_example
from .authentication import InvalidApiKey, TooManyInvalidKeys
from .keyconfig import KeyConfig, key_config_get
from .meter import (
    PENDING_TTL_SECONDS, MeterResult, MeteringUnavailable, Outcome, meter_call, meter_settle, open_calls_keys,
)
from .parsers import BoundedJSONParser
from .permissions import access_check
from .throttling import QuotaExceeded, RateLimited, ServiceUnavailable, SpendCapReached
from .usage_fields import last_used_field, open_calls_key

# --- who is asking: the product's service token, cached in-process ---

SERVICE_TOKEN_PATTERN = re.compile(r"^tbs_[0-9a-f]{48}$")
# Products are few; a flood of made-up tokens is remembered apart, so it cannot evict them.
KNOWN_MAX_ENTRIES = 1_000
UNKNOWN_MAX_ENTRIES = 10_000
UNKNOWN_TOKEN_SECONDS = 600


class InvalidServiceToken(exceptions.AuthenticationFailed):
    default_detail = "Invalid service token"
    default_code = "invalid_service_token"


class TooManyInvalidServiceTokens(TooManyInvalidKeys):
    default_detail = "Too many invalid service tokens from this address"


@dataclass(frozen=True, slots=True)
class ServiceCaller:
    """The request's user on the verify API: the product whose service token was sent."""

    product: str
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True


# token hash -> (product slug, or None for an inactive product; monotonic expiry)
_known: dict[str, tuple[str | None, float]] = {}
_unknown: TTLCache = TTLCache(maxsize=UNKNOWN_MAX_ENTRIES, ttl=UNKNOWN_TOKEN_SECONDS)
_unknown_lock = threading.Lock()


def service_product_cached(raw_token: str) -> tuple[bool, str | None]:
    """(True, slug) for an active product's token, (True, None) for a token known to open
    nothing, (False, None) when only a lookup can tell. No SQL, no Redis."""
    digest = service_token_hash(raw_token)
    hit = _known.get(digest)
    if hit is not None and hit[1] > time.monotonic():
        return True, hit[0]
    with _unknown_lock:
        if digest in _unknown:
            return True, None
    return False, None


def service_product_load(raw_token: str) -> str | None:
    """The active product `raw_token` opens, from Postgres, remembered for KEY_CACHE_SECONDS (a
    rotated token or a deactivated product stops working in every process within that)."""
    product = product_by_token(raw_token)
    digest = service_token_hash(raw_token)
    if product is None:
        with _unknown_lock:
            _unknown[digest] = True
        return None
    if len(_known) >= KNOWN_MAX_ENTRIES:
        _known.clear()
    slug = product.slug if product.active else None
    _known[digest] = (slug, time.monotonic() + settings.KEY_CACHE_SECONDS)
    return slug


@receiver([post_save, post_delete], sender=Product)
def service_products_forget(**_signal_kwargs) -> None:
    """A product changed (token rotated, deactivated, deleted): this process asks Postgres again.
    Other processes notice within KEY_CACHE_SECONDS."""
    _known.clear()
    with _unknown_lock:
        _unknown.clear()


class ServiceTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <service token>`, the token of the product being called."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        raw = value.strip()
        if scheme.lower() != "bearer" or not raw:
            return None
        if not SERVICE_TOKEN_PATTERN.match(raw):
            raise InvalidServiceToken()
        known, slug = service_product_cached(raw)
        if not known:
            slug = _looked_up(request, raw)
        if slug is None:
            raise InvalidServiceToken()
        return ServiceCaller(product=slug), slug

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="verify"'


def _looked_up(request, raw: str) -> str | None:
    # A well-formed made-up token costs a query: count them per address, as for API keys.
    scope, ident = "v1-invalid-service-token", client_ip(request)
    refused = attempt_peek(scope=scope, ident=ident, limit=settings.API_INVALID_KEYS_PER_MINUTE)
    if refused.limited:
        raise TooManyInvalidServiceTokens(wait=refused.retry_after)
    slug = service_product_load(raw)
    if slug is None:
        attempt_count(scope=scope, ident=ident, limit=settings.API_INVALID_KEYS_PER_MINUTE, window_seconds=60)
    return slug


class ServiceTokenRequired(BasePermission):
    def has_permission(self, request, view) -> bool:
        if request.auth is None:
            raise InvalidServiceToken("Service token required")
        return True


# --- verify ---

REFUSAL_CODES = {
    Outcome.RATE_LIMITED: RateLimited.default_code,
    Outcome.QUOTA_EXCEEDED: QuotaExceeded.default_code,
    Outcome.SPEND_CAP: SpendCapReached.default_code,
}
# A settle-later call's ticket outlives its release by this much: a late settle then hears
# `call_expired`, not `unknown_call`.
CALL_TICKET_GRACE_SECONDS = 600
CALL_ID_PATTERN = re.compile(r"^call_([1-9][0-9]{0,17})_([0-9a-f]{32})$")


@dataclass(frozen=True, slots=True)
class Verdict:
    valid: bool
    code: str | None
    customer: int | None = None
    plan: str | None = None
    call: str | None = None
    meter: MeterResult | None = None

    def as_json(self) -> dict:
        meter = self.meter
        return {
            "valid": self.valid,
            "code": self.code,
            "customer": self.customer,
            "plan": self.plan,
            "call": self.call,
            "ratelimit": {
                "limit": meter.rate_limit if meter else None,
                "remaining": meter.rate_remaining if meter else None,
                "reset": meter.rate_reset_seconds if meter else None,
            },
            "quota": {
                "limit": meter.quota_limit if meter else None,
                "remaining": meter.quota_remaining if meter else None,
            },
        }


def key_verify(*, product: str, raw_key: str, settle_later: bool) -> Verdict:
    """May this key make one call of `product`? Meters it when it may: billed now, or reserved
    under the returned call id until call_settle (settle_later)."""
    if not key_is_well_formed(raw_key):
        return Verdict(valid=False, code=InvalidApiKey.default_code)
    config = key_config_get(raw_key)  # in-process copy: no SQL in steady state
    try:
        access_check(config, product)
        result = meter_call(config=config, raw_key=raw_key, product=product,
                            revalidate=lambda reloaded: access_check(reloaded, product))
    except MeteringUnavailable:
        raise ServiceUnavailable() from None
    except exceptions.APIException as refusal:  # refused before metering, or on a reloaded config
        return _refused(config, refusal.get_codes())
    config = result.config
    if not result.allowed:
        return _refused(config, REFUSAL_CODES[result.outcome], result)
    call = _call_reserve(result) if settle_later and result.store == "redis" else None
    if call is None:
        # Without Redis (metering in Postgres, or Redis lost just now) nothing can hold the call
        # open: "later" becomes "now", and the answer carries no call to settle.
        meter_settle(result=result, status_code=200)
    return Verdict(valid=True, code=None, customer=config.customer_id, plan=config.plan_name, call=call,
                   meter=result)


def _refused(config: KeyConfig | None, code: str, result: MeterResult | None = None) -> Verdict:
    if config is None or code == InvalidApiKey.default_code:
        return Verdict(valid=False, code=code, meter=result)
    return Verdict(valid=False, code=code, customer=config.customer_id, plan=config.plan_name, meter=result)


def _call_reserve(result: MeterResult) -> str | None:
    """Keep the call open under a new call id (one more round trip): the ticket says what
    settling bills or releases (metering/lua/settle.lua)."""
    customer_id = result.config.customer_id
    secret = secrets.token_hex(16)
    ticket = {
        "p": result.product,
        "o": open_calls_key(customer_id=customer_id, day=result.day),
        "m": result.open_member,
        "f": result.field,
        "t": last_used_field(key_id=result.config.key_id),
    }
    ttl = int(settings.METERING_CALL_MAX_SECONDS) + CALL_TICKET_GRACE_SECONDS
    try:
        connection.redis_client().set(_ticket_key(customer_id, secret), json.dumps(ticket), ex=ttl)
    except connection.UNAVAILABLE:
        connection.redis_mark_down()
        return None
    return f"call_{customer_id}_{secret}"


def _ticket_key(customer_id: int, secret: str) -> str:
    return connection.customer_key(customer_id, f"call:{secret}")


# --- settle ---


class UnknownCall(exceptions.NotFound):
    default_detail = "No such call for this product"
    default_code = "unknown_call"


class AlreadySettled(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This call was settled already"
    default_code = "already_settled"


class CallExpired(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "This call was not settled in time and was released, not billed"
    default_code = "call_expired"


SETTLED = {1: True, 2: False}
SETTLE_REFUSALS = {0: UnknownCall, 3: AlreadySettled, 4: CallExpired}


def call_settle(*, product: str, call: str, status_code: int) -> bool:
    """Bill (2xx) or release (any other status) a call reserved by key_verify, once, atomically.
    Returns whether it was billed; raises UnknownCall (also for another product's call),
    AlreadySettled or CallExpired."""
    match = CALL_ID_PATTERN.match(call)
    if match is None:
        raise UnknownCall()
    customer_id, secret = int(match[1]), match[2]
    # As meter_call: after an outage, this process runs its recovery before anything else.
    if connection.redis_is_marked_down() or not connection.redis_recovered():
        raise ServiceUnavailable()
    (open_now, month_now), (open_before, month_before) = open_calls_keys(
        customer_id=customer_id, day=timezone.now().date())
    keys = (_ticket_key(customer_id, secret), connection.customer_key(customer_id, "pending"),
            open_now, month_now, open_before, month_before)
    args = (product, "1" if 200 <= status_code < 300 else "0", int(settings.METERING_CALL_MAX_SECONDS * 1000),
            PENDING_TTL_SECONDS)
    try:
        outcome = connection.run_script(connection.redis_client(), "settle", keys, args)
    except connection.UNAVAILABLE:
        # The call stays open; the service may retry, or the flush releases it once Redis is back.
        connection.redis_mark_down()
        raise ServiceUnavailable() from None
    if outcome in SETTLE_REFUSALS:
        raise SETTLE_REFUSALS[outcome]()
    return SETTLED[outcome]


# --- the views ---


class StrictStatusField(serializers.IntegerField):
    """An HTTP status as a JSON number: not "200", not 200.0, not true."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def _object(request) -> dict:
    if not isinstance(request.data, dict):
        raise serializers.ValidationError({"non_field_errors": ["Send a JSON object."]})
    return request.data


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class VerifyApiBase(APIView):
    # Called by the product's own service with its service token, never by API customers.
    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [ServiceTokenRequired]
    throttle_classes: list = []
    parser_classes = [BoundedJSONParser]


def _errors(described: dict[int, str]) -> dict:
    return {code: OpenApiResponse(ErrorSerializer, description=text) for code, text in described.items()}


SERVICE_ERROR_EXAMPLES = [
    error_example("Bad service token", 401, "Invalid service token", "invalid_service_token"),
    error_example("Try again shortly", 503, "Metering is unavailable; try again shortly", "metering_unavailable"),
]
RATELIMIT_EXAMPLE = {"limit": 100, "remaining": 99, "reset": 60}


class VerifyApi(VerifyApiBase):
    @extend_schema_serializer(component_name="VerifyInput")
    class InputSerializer(serializers.Serializer):
        key = StrictCharField(max_length=200, trim_whitespace=False, help_text=(
            "The API key your customer sent you, `sk_live_…`, as received."
        ))
        settle = serializers.ChoiceField(["now", "later"], default="now", help_text=(
            "`now` (the default): the call is billed at once. `later`: the call is reserved and the answer "
            "carries a `call` id; report your answer's status to `/v1/calls/{call}/settle` and only a 2xx is billed."
        ))

    @extend_schema_serializer(component_name="VerifyOutput")
    class OutputSerializer(serializers.Serializer):
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

    @extend_schema(
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
        request=InputSerializer,
        responses={200: OutputSerializer, **_errors({
            400: "Bad input; `fields` names each problem.",
            401: "`Invalid service token`: missing, unknown, rotated, or its product is inactive.",
            429: "`Too many invalid service tokens from this address`, with Retry-After.",
            503: "Calls cannot be counted for a moment; nothing was counted. Retry shortly.",
        })},
        examples=[
            OpenApiExample("Bill at once", request_only=True, value={"key": "sk_live_3f…9a"}),
            OpenApiExample("Settle later", request_only=True, value={"key": "sk_live_3f…9a", "settle": "later"}),
            ok_example("Valid, billed", {
                "valid": True, "code": None, "customer": 42, "plan": "Starter", "call": None,
                "ratelimit": RATELIMIT_EXAMPLE, "quota": {"limit": 50000, "remaining": 48211}}),
            ok_example("Valid, settle later", {
                "valid": True, "code": None, "customer": 42, "plan": "Starter",
                "call": "call_42_9f86d081884c7d659a2feaa0c55ad015",
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
    def post(self, request):
        data = _valid(self.InputSerializer, _object(request))
        verdict = key_verify(product=request.auth, raw_key=data["key"], settle_later=data["settle"] == "later")
        return Response(verdict.as_json())


class CallSettleApi(VerifyApiBase):
    @extend_schema_serializer(component_name="CallSettleInput")
    class InputSerializer(serializers.Serializer):
        status = StrictStatusField(min_value=100, max_value=599, help_text=(
            "The HTTP status your service answered the call with, 100 to 599: a 2xx bills the call, "
            "anything else releases it."
        ))

    @extend_schema_serializer(component_name="CallSettleOutput")
    class OutputSerializer(serializers.Serializer):
        call = serializers.CharField(help_text="The call settled.")
        billed = serializers.BooleanField(help_text="True when the call was billed (a 2xx status).")

    @extend_schema(
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
        request=InputSerializer,
        parameters=[OpenApiParameter("call", str, OpenApiParameter.PATH, description=(
            "The `call` id the verify answered, e.g. `call_42_9f86d081884c7d659a2feaa0c55ad015`."
        ))],
        responses={200: OutputSerializer, **_errors({
            400: "Bad input; `fields` names each problem.",
            401: "`Invalid service token`: missing, unknown, rotated, or its product is inactive.",
            404: "`No such call for this product`: unknown, or another product's call.",
            409: "`This call was settled already`: nothing more is billed.",
            410: "`This call was not settled in time`: it was released, not billed.",
            429: "`Too many invalid service tokens from this address`, with Retry-After.",
            503: "Calls cannot be settled for a moment; the call stays reserved. Retry shortly.",
        })},
        examples=[
            OpenApiExample("Served", request_only=True, value={"status": 200}),
            OpenApiExample("Failed", request_only=True, value={"status": 502}),
            ok_example("Billed", {"call": "call_42_9f86d081884c7d659a2feaa0c55ad015", "billed": True}),
            ok_example("Released", {"call": "call_42_9f86d081884c7d659a2feaa0c55ad015", "billed": False}),
            error_example("Bad status", 400, "Invalid input", "invalid_input",
                          fields={"status": ["Ensure this value is less than or equal to 599."]}),
            error_example("Unknown call", 404, "No such call for this product", "unknown_call"),
            error_example("Settled twice", 409, "This call was settled already", "already_settled"),
            error_example("Too late", 410, "This call was not settled in time and was released, not billed",
                          "call_expired"),
            *SERVICE_ERROR_EXAMPLES,
        ],
    )
    def post(self, request, call: str):
        data = _valid(self.InputSerializer, _object(request))
        billed = call_settle(product=request.auth, call=call, status_code=data["status"])
        return Response({"call": call, "billed": billed})
