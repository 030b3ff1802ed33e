"""The one module that talks to Stripe (the official SDK); everything else calls these functions.

Stripe only collects money: it never decides an amount. Each function returns a small frozen
dataclass of the fields we use, and every SDK error leaves as one of our `BillingError`s, so no
caller imports `stripe`. The client is built from settings on each call (cheap), so tests and
`config/embedded.py` can point it at localstripe with STRIPE_API_BASE.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

import stripe
from django.conf import settings

logger = logging.getLogger(__name__)

# Stripe's own name for "no such object"; real Stripe sends it, localstripe sends a bare 404.
RESOURCE_MISSING = "resource_missing"
# A webhook signed more than this long ago, or this far in the future, is refused (Stripe's own
# tolerance against replays; the future side also refuses a signature made to be replayed later).
WEBHOOK_TOLERANCE_SECONDS = 300
# The charges a look-up reads for a lost PaymentIntent: one page of the customer's recent ones.
INTENT_FIND_LIMIT = 20
# Our clock and Stripe's may differ: the look-up starts this long before the attempt was made.
INTENT_FIND_SLACK_SECONDS = 3600


class BillingError(Exception):
    """A payment problem the caller must handle; `code` is stable, the message is for people."""

    code = "billing_error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.code = code or self.code


class StripeUnavailable(BillingError):
    """Stripe could not be reached or failed (network, 5xx, rate limit): retry later."""

    code = "stripe_unavailable"


class StripeNotFound(BillingError):
    """Stripe does not know this object (e.g. a customer lost in a test-data reset)."""

    code = "resource_missing"


class StripeRejected(BillingError):
    """Stripe refused the request as invalid; retrying the same request will not help."""

    code = "stripe_rejected"


class WebhookInvalid(BillingError):
    """The webhook's signature or payload is not Stripe's."""

    code = "bad_signature"


class WebhookMalformed(WebhookInvalid):
    """A signed event whose shape is not one Stripe sends (a field missing or of the wrong type)."""

    code = "bad_payload"


class CardDeclined(BillingError):
    """The card was declined."""

    code = "card_declined"

    def __init__(self, message: str = "", *, code: str | None = None, payment_intent_id: str = "") -> None:
        super().__init__(message or "Your card was declined.", code=code)
        self.payment_intent_id = payment_intent_id


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    object: dict  # data.object
    payload: dict


@dataclass(frozen=True)
class SetupIntentInfo:
    id: str
    client_secret: str
    status: str
    customer: str
    payment_method: str


@dataclass(frozen=True)
class CardInfo:
    id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    # Stripe's hash of the card number: the same card saved twice has the same one.
    fingerprint: str = ""


@dataclass(frozen=True)
class PaymentIntentInfo:
    id: str
    status: str
    amount_cents: int
    invoice_id: str
    attempt_number: str
    error_code: str = ""
    error_message: str = ""
    customer: str = ""  # the Stripe customer charged
    currency: str = ""  # lower case, as Stripe writes it

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def failed(self) -> bool:
        # After a decline Stripe puts the intent back to "requires_payment_method".
        return self.status in ("requires_payment_method", "canceled")


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str, timeout: float) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        http_client=stripe.new_default_http_client(timeout=timeout),
        # Retries are ours (Celery, with our own attempt bookkeeping), never the SDK's silently.
        max_network_retries=0,
    )


def _client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise StripeUnavailable("Stripe is not configured (STRIPE_SECRET_KEY is empty).", code="stripe_not_configured")
    return _client_for(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS)


def _translate(exc: stripe.StripeError) -> BillingError:
    """SDK errors become ours; the message is Stripe's, safe to show (it never holds card data)."""
    message = getattr(exc, "user_message", None) or str(getattr(exc, "_message", "") or exc)
    code = getattr(exc, "code", None) or ""
    if isinstance(exc, stripe.CardError):
        pi = getattr(getattr(exc, "error", None), "payment_intent", None)
        return CardDeclined(message, code=code or "card_declined", payment_intent_id=getattr(pi, "id", "") or "")
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.AuthenticationError)):
        return StripeUnavailable(message)
    if isinstance(exc, stripe.InvalidRequestError):
        if code == RESOURCE_MISSING or exc.http_status == 404:
            return StripeNotFound(message)
        return StripeRejected(message, code=code or "stripe_rejected")
    status = getattr(exc, "http_status", None) or 500
    return StripeUnavailable(message) if status >= 500 or status == 409 else StripeRejected(message)


def _call(operation, *args, **kwargs):
    try:
        return operation(*args, **kwargs)
    except stripe.StripeError as exc:
        error = _translate(exc)
        logger.info("stripe call failed: %s (%s)", error.code, type(exc).__name__)
        raise error from exc


def amount_to_cents(amount: Decimal) -> int:
    """Exact: a Decimal with more than two places is a bug upstream, never rounded here."""
    cents = Decimal(amount).scaleb(2)
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of cents")
    return int(cents)


def stripe_customer_create(*, customer_id: int, email: str, name: str, replaces: str = "") -> str:
    """`replaces` (the id Stripe lost) is part of the idempotency key, or Stripe would replay it."""
    created = _call(
        _client().v1.customers.create,
        params={"email": email, "name": name, "metadata": {"tollbooth_customer_id": str(customer_id)}},
        options={"idempotency_key": f"customer:{customer_id}:create:{replaces or 'first'}"},
    )
    return created.id


def stripe_customer_exists(*, stripe_customer_id: str) -> bool:
    try:
        found = _call(_client().v1.customers.retrieve, stripe_customer_id)
    except StripeNotFound:
        return False
    return not getattr(found, "deleted", False)


def _setup_intent_info(intent) -> SetupIntentInfo:
    method = intent.payment_method
    return SetupIntentInfo(
        id=intent.id, client_secret=intent.client_secret or "", status=intent.status,
        customer=intent.customer or "", payment_method=getattr(method, "id", method) or "",
    )


def setup_intent_create(*, stripe_customer_id: str, customer_id: int) -> SetupIntentInfo:
    intent = _call(
        _client().v1.setup_intents.create,
        params={
            "customer": stripe_customer_id, "usage": "off_session", "payment_method_types": ["card"],
            "metadata": {"tollbooth_customer_id": str(customer_id)},
        },
    )
    return _setup_intent_info(intent)


def setup_intent_retrieve(*, setup_intent_id: str) -> SetupIntentInfo:
    return _setup_intent_info(_call(_client().v1.setup_intents.retrieve, setup_intent_id))


def payment_method_retrieve(*, payment_method_id: str) -> CardInfo:
    method = _call(_client().v1.payment_methods.retrieve, payment_method_id)
    card = method.card
    return CardInfo(
        id=method.id, brand=card.brand or "", last4=card.last4 or "",
        exp_month=card.exp_month, exp_year=card.exp_year, fingerprint=getattr(card, "fingerprint", None) or "",
    )


def payment_method_detach(*, payment_method_id: str) -> None:
    """The card leaves the Stripe customer: it can never be charged again."""
    _call(_client().v1.payment_methods.detach, payment_method_id)


def _payment_intent_info(intent) -> PaymentIntentInfo:
    return payment_intent_from_data(intent.to_dict())


def payment_intent_from_data(data: dict) -> PaymentIntentInfo:
    """A PaymentIntent as Stripe sends it (API answer or webhook event), reduced to our fields.

    Raises WebhookMalformed for a shape Stripe never sends: a signed event is checked here
    before anything is stored, so an odd one is a 400, never a crash.
    """
    metadata = _field(data, "metadata", dict, optional=True) or {}
    error = _field(data, "last_payment_error", dict, optional=True) or {}
    customer = _field(data, "customer", (str, dict), optional=True) or ""
    if isinstance(customer, dict):
        customer = _field(customer, "id", str)
    return PaymentIntentInfo(
        id=_text(_field(data, "id", str), 64), status=_text(_field(data, "status", str), 40),
        amount_cents=_field(data, "amount", int), currency=_text(_field(data, "currency", str), 3).lower(),
        customer=_text(customer, 255),
        invoice_id=_field(metadata, "tollbooth_invoice_id", str, optional=True) or "",
        attempt_number=_field(metadata, "tollbooth_attempt", str, optional=True) or "",
        error_code=_field(error, "decline_code", str, optional=True) or _field(error, "code", str, optional=True) or "",
        error_message=_field(error, "message", str, optional=True) or "",
    )


def _field(data: dict, name: str, kind: type | tuple[type, ...], *, optional: bool = False):
    value = data.get(name)
    if value is None and optional:
        return None
    # bool is an int to Python, never to Stripe.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise WebhookMalformed(f"{name} is missing or of the wrong type")
    return value


def _text(value: str, limit: int) -> str:
    if len(value) > limit:
        raise WebhookMalformed(f"a field is longer than {limit} characters")
    return value


def payment_intent_create(
    *, amount: Decimal, currency: str, stripe_customer_id: str, payment_method_id: str,
    invoice_id: int, attempt_number: int, idempotency_key: str,
) -> PaymentIntentInfo:
    """Charge the saved card now, off-session. Raises CardDeclined when the bank says no."""
    intent = _call(
        _client().v1.payment_intents.create,
        params={
            "amount": amount_to_cents(amount), "currency": currency.lower(),
            "customer": stripe_customer_id, "payment_method": payment_method_id,
            "off_session": True, "confirm": True,
            "metadata": {"tollbooth_invoice_id": str(invoice_id), "tollbooth_attempt": str(attempt_number)},
        },
        options={"idempotency_key": idempotency_key},
    )
    return _payment_intent_info(intent)


def payment_intent_retrieve(*, payment_intent_id: str) -> PaymentIntentInfo:
    return _payment_intent_info(_call(_client().v1.payment_intents.retrieve, payment_intent_id))


def payment_intent_find(
    *, stripe_customer_id: str, invoice_id: int, attempt_number: int, since: datetime,
) -> PaymentIntentInfo | None:
    """The intent an attempt created, when its answer was lost before we learnt the intent's id.

    Bounded: one page (INTENT_FIND_LIMIT) of the customer's charges made since the attempt
    began, then the intents those charges name; never a walk through every intent. A list, not
    Stripe's search, because search lags behind by up to a minute and localstripe has none. An
    intent that made no charge (it waits for authentication) is not found here; creating it
    again with the attempt's idempotency key gets the same intent back from Stripe.
    """
    charges = _call(
        _client().v1.charges.list,
        params={"customer": stripe_customer_id, "limit": INTENT_FIND_LIMIT,
                "created": {"gt": int(since.timestamp()) - INTENT_FIND_SLACK_SECONDS}},
    )
    wanted = (str(invoice_id), str(attempt_number))
    named = (getattr(charge, "payment_intent", None) for charge in charges.data)
    for intent_id in dict.fromkeys(getattr(pi, "id", pi) for pi in named if pi):
        info = payment_intent_retrieve(payment_intent_id=intent_id)
        if (info.invoice_id, info.attempt_number) == wanted:
            return info
    return None


def webhook_event_verify(*, payload: bytes, signature: str) -> WebhookEvent:
    """Stripe's own check (HMAC of timestamp + body), a timestamp within
    WEBHOOK_TOLERANCE_SECONDS either way, then the event's shape.

    Raises WebhookInvalid for a signature that is not Stripe's, WebhookMalformed for a signed
    body whose shape Stripe never sends.
    """
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:  # an empty key would make every forged signature valid
        raise WebhookInvalid("STRIPE_WEBHOOK_SECRET is not set")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, WEBHOOK_TOLERANCE_SECONDS)
    except (UnicodeDecodeError, stripe.SignatureVerificationError) as exc:
        raise WebhookInvalid(type(exc).__name__) from exc
    if _signed_at(signature) > time.time() + WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookInvalid("signed in the future")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise WebhookMalformed("the body is not JSON") from exc
    return _webhook_event(data)


def _signed_at(signature: str) -> int:
    # verify_header has accepted the header, so it holds one integer t=.
    stamps = [item[2:] for item in signature.split(",") if item.startswith("t=")]
    return int(stamps[0])


def _webhook_event(data) -> WebhookEvent:
    if not isinstance(data, dict):
        raise WebhookMalformed("the event is not an object")
    body = _field(data, "data", dict)
    event = WebhookEvent(id=_text(_field(data, "id", str), 100), type=_text(_field(data, "type", str), 100),
                         object=_field(body, "object", dict), payload=data)
    if not event.id or not event.type:
        raise WebhookMalformed("the event has no id or type")
    kind = event.type.split(".")[0]
    if kind == "payment_intent":
        payment_intent_from_data(event.object)
    elif kind == "setup_intent":
        _field(event.object, "customer", str, optional=True)
        method = _field(event.object, "payment_method", (str, dict), optional=True)
        if isinstance(method, dict):
            _field(method, "id", str)
    return event
