"""Stripe's webhook: verify the signature, store the event once, then handle it.

Every answer is JSON. A bad, stale or future-dated signature is 400 (Stripe retries, an
attacker learns nothing), and so is a signed event of a shape Stripe never sends; a replayed
event, an unknown type, or an event about a customer or invoice we do not know is 200 with
nothing changed, so Stripe stops resending it. A payment event that does not match the attempt
on record is kept as a "mismatch" (logged, and reported by the nightly reconciliation) and
settles nothing. Stripe unreachable while we handle an event is 503 with nothing kept, so
Stripe sends it again later.
"""
from __future__ import annotations

import logging
from typing import Callable

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .cards import card_save_from_setup_intent
from .gateway import (
    BillingError, StripeUnavailable, WebhookEvent, WebhookInvalid, WebhookMalformed, payment_intent_from_data,
    webhook_event_verify,
)
from .models import StripeEvent
from .payment_events import PaymentMismatch, payment_intent_settle

logger = logging.getLogger(__name__)


def _payment_intent_event(event: WebhookEvent) -> str:
    return payment_intent_settle(intent=payment_intent_from_data(event.object))


def _setup_intent_succeeded(event: WebhookEvent) -> str:
    intent = event.object
    method = intent.get("payment_method")
    saved = card_save_from_setup_intent(
        stripe_customer_id=intent.get("customer") or "",
        payment_method_id=(method.get("id") if isinstance(method, dict) else method) or "",
    )
    return "card saved" if saved else "unknown customer"


HANDLERS: dict[str, Callable[[WebhookEvent], str]] = {
    "payment_intent.succeeded": _payment_intent_event,
    "payment_intent.payment_failed": _payment_intent_event,
    "setup_intent.succeeded": _setup_intent_succeeded,
}


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event = webhook_event_verify(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    except WebhookMalformed as exc:
        logger.warning("stripe webhook refused, signed but malformed: %s", exc)
        return JsonResponse({"error": f"Malformed event: {exc}", "code": exc.code}, status=400)
    except WebhookInvalid as exc:
        logger.warning("stripe webhook rejected: %s", exc)
        return JsonResponse({"error": "Invalid signature or payload", "code": "bad_signature"}, status=400)
    try:
        # One transaction: if handling fails unexpectedly the event is not kept either, so
        # Stripe's redelivery is handled rather than taken for a replay.
        with transaction.atomic():
            stored = _event_store(event)
            if stored is None:
                logger.info("stripe webhook %s (%s) replayed: ignored", event.id, event.type)
                return JsonResponse({"status": "duplicate"})
            return JsonResponse({"status": _event_handle(stored, event)})
    except StripeUnavailable:
        logger.warning("stripe webhook %s (%s): Stripe unreachable, asking for a redelivery", event.id, event.type)
        return JsonResponse({"error": "Try again later", "code": "stripe_unavailable"}, status=503)


def _event_store(event: WebhookEvent) -> StripeEvent | None:
    """The event's row, or None if it was stored before (a replay)."""
    try:
        with transaction.atomic():
            return StripeEvent.objects.create(stripe_event_id=event.id, type=event.type, payload=event.payload)
    except IntegrityError:
        return None


def _event_handle(stored: StripeEvent, event: WebhookEvent) -> str:
    handler = HANDLERS.get(event.type)
    if handler is None:
        logger.info("stripe webhook %s: type %s not handled", event.id, event.type)
        return _event_finish(stored, StripeEvent.Status.IGNORED, "ignored")
    try:
        outcome = handler(event)
    except StripeUnavailable:
        raise
    except PaymentMismatch as exc:
        logger.warning("stripe webhook %s (%s) does not match our records, nothing settled: %s",
                       event.id, event.type, exc)
        return _event_finish(stored, StripeEvent.Status.MISMATCH, "mismatch", error=str(exc))
    except BillingError as exc:
        logger.warning("stripe webhook %s (%s) failed: %s", event.id, event.type, exc.code)
        return _event_finish(stored, StripeEvent.Status.FAILED, "failed", error=f"{exc.code}: {exc}")
    logger.info("stripe webhook %s (%s): %s", event.id, event.type, outcome)
    status = StripeEvent.Status.IGNORED if outcome.startswith("unknown") else StripeEvent.Status.PROCESSED
    return _event_finish(stored, status, outcome)


def _event_finish(stored: StripeEvent, status: str, outcome: str, error: str = "") -> str:
    stored.status, stored.handler_error, stored.processed_at = status, error, timezone.now()
    stored.save(update_fields=["status", "handler_error", "processed_at"])
    return outcome
