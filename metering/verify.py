"""The verify API (README "Sell your own API"), for services that keep their own edge: Unkey's verifyKey, 3scale's
authrep. The service sends its product's service token and a customer's key; Tollbooth answers
whether the call may go ahead and meters it with the same single round trip as its own views.

A refused key is still a 200 with `valid: false` and the refusal code the API would give: the
service asked a question and got an answer. The call is billed at once (`settle: now`), or kept
reserved (`settle: later`) until the service reports its answer's status on
`POST /v1/calls/<call>/settle`: a 2xx bills it, anything else releases it, and a call not settled
within METERING_CALL_MAX_SECONDS is released, unbilled, like a call whose worker died.

This module decides and meters (key_verify, call_settle); who may ask is metering/service_tokens.py,
the views are VerifyApi and CallSettleApi in metering/apis.py, their docs metering/verify_docs.py.
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions, status

from accounts.keyformat import key_is_well_formed

from . import connection
from .authentication import InvalidApiKey
from .keyconfig import KeyConfig, key_config_get
from .meter import MeterResult, MeteringUnavailable, Outcome, meter_call, meter_settle
from .permissions import access_check
from .throttling import QuotaExceeded, RateLimited, ServiceUnavailable, SpendCapReached, TestDayLimitReached
from .usage_fields import PENDING_TTL_SECONDS, last_used_field, open_calls_key, open_calls_keys

REFUSAL_CODES = {
    Outcome.RATE_LIMITED: RateLimited.default_code,
    Outcome.QUOTA_EXCEEDED: QuotaExceeded.default_code,
    Outcome.SPEND_CAP: SpendCapReached.default_code,
    Outcome.TEST_DAY_LIMIT: TestDayLimitReached.default_code,
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
    mode: str | None = None  # the key's mode once it is known: the `Tollbooth-Mode` header

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
        # The entitlement is judged by the meter script, after its config-version check.
        access_check(config, None, raw_key=raw_key)
        # A call settled later needs an open member of its own: it is never admitted under a lease.
        result = meter_call(config=config, raw_key=raw_key, product=product, lease=not settle_later,
                            revalidate=lambda reloaded: access_check(reloaded, product, raw_key=raw_key))
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
        # open: "later" becomes "now", and the answer carries no call to settle. A test key's
        # call is never billed: there is nothing to settle either.
        meter_settle(result=result, status_code=200)
    return Verdict(valid=True, code=None, customer=config.customer_id, plan=config.plan_name, call=call,
                   meter=result, mode=config.mode)


def _refused(config: KeyConfig | None, code: str, result: MeterResult | None = None) -> Verdict:
    if config is None or code == InvalidApiKey.default_code:
        return Verdict(valid=False, code=code, meter=result)
    return Verdict(valid=False, code=code, customer=config.customer_id, plan=config.plan_name, meter=result,
                   mode=config.mode)


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
        connection.redis_mark_down(_ticket_key(customer_id, secret))
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
    ticket_key = _ticket_key(customer_id, secret)  # on a cluster: the breaker of its primary
    if connection.redis_is_marked_down(ticket_key) or not connection.redis_recovered(ticket_key):
        raise ServiceUnavailable()
    (open_now, month_now), (open_before, month_before) = open_calls_keys(
        customer_id=customer_id, day=timezone.now().date())
    keys = (ticket_key, connection.customer_key(customer_id, "pending"),
            open_now, month_now, open_before, month_before)
    args = (product, "1" if 200 <= status_code < 300 else "0", int(settings.METERING_CALL_MAX_SECONDS * 1000),
            PENDING_TTL_SECONDS)
    try:
        outcome = connection.run_script(connection.redis_client(), "settle", keys, args)
    except connection.UNAVAILABLE:
        # The call stays open; the service may retry, or the flush releases it once Redis is back.
        connection.redis_mark_down(ticket_key)
        raise ServiceUnavailable() from None
    if outcome in SETTLE_REFUSALS:
        raise SETTLE_REFUSALS[outcome]()
    return SETTLED[outcome]
