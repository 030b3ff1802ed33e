"""/billing/stripe/webhook/: signatures, replays, unknown events, and each handled type."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Customer
from billing import cards
from billing.models import Invoice, PaymentAttempt, PaymentMethod, StripeEvent
from tests.factories import CustomerFactory, seeded_plan
from tests.payments import card_confirm_as_stripe_js

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_outside_task")]

URL = "/billing/stripe/webhook/"
SECRET = "whsec_test_0123456789abcdef"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET


def signed(payload: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event(event_type: str, obj: dict, event_id: str = "evt_test_1") -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": event_type, "created": int(time.time()),
                       "api_version": "2017-08-15", "data": {"object": obj}}).encode()


def post(payload: bytes, signature: str | None = None):
    headers = {"HTTP_STRIPE_SIGNATURE": signed(payload) if signature is None else signature}
    return Client().post(URL, data=payload, content_type="application/json", **headers)


@pytest.fixture
def pending_attempt(db):
    """A $49 charge Stripe is still processing: its intent id is on record, its outcome is not."""
    customer = CustomerFactory(plan=seeded_plan("starter"), stripe_customer_id="cus_test_1")
    invoice = Invoice.objects.create(customer=customer, period="2026-10", number="TB-2026-000900",
                                     status=Invoice.Status.OPEN, subtotal=Decimal("49.00"), total=Decimal("49.00"),
                                     issued_at=timezone.now())
    return PaymentAttempt.objects.create(invoice=invoice, number=1, amount=invoice.total, currency="usd",
                                         stripe_customer_id="cus_test_1", stripe_payment_intent_id="pi_test_1")


def intent(attempt: PaymentAttempt, status: str = "succeeded", **extra) -> dict:
    return {"id": "pi_test_1", "object": "payment_intent", "amount": 4900, "currency": "usd", "status": status,
            "customer": "cus_test_1",
            "metadata": {"tollbooth_invoice_id": str(attempt.invoice_id), "tollbooth_attempt": str(attempt.number)},
            **extra}


def test_a_forged_signature_is_refused_and_nothing_is_stored(pending_attempt):
    payload = event("payment_intent.succeeded", intent(pending_attempt))

    response = post(payload, signature=signed(payload, secret="whsec_not_ours"))

    assert response.status_code == 400
    assert response.json() == {"error": "Invalid signature or payload", "code": "bad_signature"}
    assert not StripeEvent.objects.exists()
    assert Invoice.objects.get().status == Invoice.Status.OPEN


@pytest.mark.parametrize("signature", ["", "t=1,v1=abc", "garbage"])
def test_a_missing_or_malformed_signature_is_refused(signature):
    response = post(event("payment_intent.succeeded", {"id": "pi_x", "metadata": {}}), signature=signature)
    assert (response.status_code, response.json()["code"]) == (400, "bad_signature")


def test_a_stale_signature_is_refused_even_when_the_secret_is_right(pending_attempt):
    payload = event("payment_intent.succeeded", intent(pending_attempt))

    response = post(payload, signature=signed(payload, at=int(time.time()) - 600))

    assert (response.status_code, response.json()["code"]) == (400, "bad_signature")
    assert not StripeEvent.objects.exists()


def test_only_post_is_accepted():
    assert Client().get(URL).status_code == 405


def test_payment_succeeded_pays_the_invoice_once_and_a_replay_changes_nothing(pending_attempt, django_capture_on_commit_callbacks):
    payload = event("payment_intent.succeeded", intent(pending_attempt))

    with django_capture_on_commit_callbacks(execute=True):
        first = post(payload)
    replay = post(payload)

    assert (first.status_code, first.json()) == (200, {"status": "paid"})
    assert (replay.status_code, replay.json()) == (200, {"status": "duplicate"})
    stored = StripeEvent.objects.get()
    assert (stored.stripe_event_id, stored.status) == ("evt_test_1", StripeEvent.Status.PROCESSED)
    pending_attempt.refresh_from_db()
    assert (pending_attempt.status, pending_attempt.stripe_payment_intent_id) == (PaymentAttempt.Status.SUCCEEDED, "pi_test_1")
    invoice = Invoice.objects.get()
    assert invoice.status == Invoice.Status.PAID
    paid_at = invoice.paid_at
    second = post(event("payment_intent.succeeded", intent(pending_attempt), event_id="evt_test_2"))
    assert second.json() == {"status": "already settled"}
    assert Invoice.objects.get().paid_at == paid_at


def test_payment_failed_makes_the_customer_past_due(pending_attempt, django_capture_on_commit_callbacks):
    failed = intent(pending_attempt, status="requires_payment_method",
                    last_payment_error={"code": "card_declined", "message": "Your card was declined."})

    with django_capture_on_commit_callbacks(execute=True):
        response = post(event("payment_intent.payment_failed", failed))

    assert response.json() == {"status": "failed"}
    pending_attempt.refresh_from_db()
    assert (pending_attempt.status, pending_attempt.failure_code) == (PaymentAttempt.Status.FAILED, "card_declined")
    customer = Customer.objects.get()
    assert customer.status == Customer.Status.PAST_DUE and customer.past_due_since is not None


def test_an_unknown_event_type_is_acknowledged_and_ignored():
    response = post(event("customer.created", {"id": "cus_x", "object": "customer"}))

    assert (response.status_code, response.json()) == (200, {"status": "ignored"})
    assert StripeEvent.objects.get().status == StripeEvent.Status.IGNORED


@pytest.mark.parametrize("metadata", [{}, {"tollbooth_invoice_id": "999999", "tollbooth_attempt": "1"},
                                      {"tollbooth_invoice_id": "x'; --", "tollbooth_attempt": "1"}])
def test_an_event_for_an_unknown_invoice_changes_nothing(pending_attempt, metadata):
    # Another business on the same Stripe account: not our intent, not our Stripe customer.
    obj = {**intent(pending_attempt), "id": "pi_not_ours", "customer": "cus_not_ours", "metadata": metadata}

    response = post(event("payment_intent.succeeded", obj))

    assert (response.status_code, response.json()) == (200, {"status": "unknown invoice"})
    assert StripeEvent.objects.get().status == StripeEvent.Status.IGNORED
    assert Invoice.objects.get().status == Invoice.Status.OPEN


def test_setup_intent_succeeded_for_an_unknown_customer_changes_nothing():
    obj = {"id": "seti_x", "object": "setup_intent", "customer": "cus_nobody", "payment_method": "pm_x",
           "status": "succeeded"}

    response = post(event("setup_intent.succeeded", obj))

    assert response.json() == {"status": "unknown customer"}
    assert not PaymentMethod.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_setup_intent_succeeded_and_the_browser_return_record_the_card_once(stripe_server, settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    customer = CustomerFactory(plan=seeded_plan("starter"))
    setup = cards.card_setup_start(customer=customer)
    confirmed = card_confirm_as_stripe_js(client_secret=setup.client_secret)
    customer.refresh_from_db()

    response = post(event("setup_intent.succeeded", confirmed, event_id="evt_seti_1"))
    method = cards.card_setup_confirm(customer=customer, setup_intent_id=setup.id)

    assert response.json() == {"status": "card saved"}
    assert PaymentMethod.objects.filter(customer=customer).count() == 1
    assert (method.stripe_payment_method_id, method.last4) == (confirmed["payment_method"], "4242")
