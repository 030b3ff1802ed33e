"""A Stripe payment event settles an invoice only when it matches the attempt on record (README "Billing").

Every event here goes through the real endpoint, signed with the webhook secret as Stripe
signs it: the signature proves who sent the event, not that it is about the right charge.
"""
from __future__ import annotations

import json
import logging
import time
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Customer
from billing.models import Invoice, PaymentAttempt, StripeEvent
from dashboard.models import ReconciliationIssue
from dashboard.services import reconciliation_run
from tests.factories import CustomerFactory, seeded_plan

from .test_webhooks import SECRET, event, post, signed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_outside_task")]


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET


@pytest.fixture
def big_invoice(db):
    """The audit's case: $1,999.01 owed by one customer, its charge in flight at Stripe."""
    customer = CustomerFactory(plan=seeded_plan("starter"), stripe_customer_id="cus_owes_1999")
    invoice = Invoice.objects.create(customer=customer, period="2026-11", number="TB-2026-000901",
                                     status=Invoice.Status.OPEN, subtotal=Decimal("1999.01"),
                                     total=Decimal("1999.01"), issued_at=timezone.now())
    PaymentAttempt.objects.create(invoice=invoice, number=1, amount=invoice.total, currency="usd",
                                  stripe_customer_id="cus_owes_1999", stripe_payment_intent_id="pi_big_1")
    return invoice


def succeeded(invoice: Invoice, **changes) -> dict:
    """payment_intent.succeeded's object exactly as Stripe would send it for the attempt on record."""
    return {"id": "pi_big_1", "object": "payment_intent", "amount": 199901, "currency": "usd",
            "status": "succeeded", "customer": "cus_owes_1999",
            "metadata": {"tollbooth_invoice_id": str(invoice.pk), "tollbooth_attempt": "1"}, **changes}


def assert_nothing_settled(invoice: Invoice) -> None:
    invoice.refresh_from_db()
    attempt = invoice.attempts.get()
    assert (invoice.status, invoice.paid_at, invoice.paid_by) == (Invoice.Status.OPEN, None, "")
    assert (attempt.status, attempt.stripe_payment_intent_id) == (PaymentAttempt.Status.PENDING, "pi_big_1")


def test_the_matching_event_pays_the_invoice(big_invoice):
    response = post(event("payment_intent.succeeded", succeeded(big_invoice)))

    assert (response.status_code, response.json()) == (200, {"status": "paid"})
    big_invoice.refresh_from_db()
    assert big_invoice.status == Invoice.Status.PAID


@pytest.mark.parametrize("changes,field", [
    ({"amount": 50}, "amount"),
    ({"amount": 199900}, "amount"),  # a cent short is not the same charge
    ({"currency": "eur"}, "currency"),
    ({"customer": "cus_someone_else"}, "customer"),
    ({"id": "pi_not_this_attempts"}, "intent"),
])
def test_an_event_that_differs_from_the_attempt_is_kept_as_a_mismatch_and_settles_nothing(
    big_invoice, changes, field, caplog
):
    with caplog.at_level(logging.WARNING, logger="billing.webhooks"):
        response = post(event("payment_intent.succeeded", succeeded(big_invoice, **changes)))

    assert (response.status_code, response.json()) == (200, {"status": "mismatch"})
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.MISMATCH
    assert stored.handler_error.startswith(f"intent {changes.get('id', 'pi_big_1')} vs attempt")
    assert f"{field} " in stored.handler_error
    assert "does not match our records" in caplog.text
    assert_nothing_settled(big_invoice)


def test_fifty_cents_from_another_customer_does_not_pay_1999_and_the_reconciliation_reports_it(big_invoice):
    other = CustomerFactory(plan=seeded_plan("starter"), stripe_customer_id="cus_pays_50c")
    fifty_cents = succeeded(big_invoice, amount=50, customer=other.stripe_customer_id)

    response = post(event("payment_intent.succeeded", fifty_cents))

    assert response.json() == {"status": "mismatch"}
    assert_nothing_settled(big_invoice)
    assert Customer.objects.get(pk=big_invoice.customer_id).status == Customer.Status.ACTIVE
    period = f"{timezone.now():%Y-%m}"
    reconciliation_run(period=period)
    issue = ReconciliationIssue.objects.get(source=ReconciliationIssue.Source.PAYMENT_MISMATCH)
    assert (issue.customer_id, issue.period, issue.invoice_id) == (big_invoice.customer_id, period, big_invoice.pk)
    assert (issue.expected, issue.found) == (Decimal("1999.01"), Decimal("0.50"))
    reconciliation_run(period=period)  # a second night keeps it: the event is still on record
    assert ReconciliationIssue.objects.filter(source=ReconciliationIssue.Source.PAYMENT_MISMATCH).count() == 1


def test_a_failure_event_that_differs_does_not_make_the_customer_past_due(big_invoice):
    failed = succeeded(big_invoice, status="requires_payment_method", amount=100,
                       last_payment_error={"code": "card_declined", "message": "Declined"})

    response = post(event("payment_intent.payment_failed", failed))

    assert response.json() == {"status": "mismatch"}
    assert_nothing_settled(big_invoice)
    assert Customer.objects.get(pk=big_invoice.customer_id).status == Customer.Status.ACTIVE


def test_an_intent_we_never_made_for_one_of_our_customers_is_a_mismatch(big_invoice):
    unknown = succeeded(big_invoice, id="pi_made_elsewhere", metadata={})

    response = post(event("payment_intent.succeeded", unknown))

    assert response.json() == {"status": "mismatch"}
    assert "matches no payment attempt" in StripeEvent.objects.get().handler_error
    assert_nothing_settled(big_invoice)
    reconciliation_run(period=f"{timezone.now():%Y-%m}")
    issue = ReconciliationIssue.objects.get(source=ReconciliationIssue.Source.PAYMENT_MISMATCH)
    assert (issue.customer_id, issue.expected, issue.found) == (
        big_invoice.customer_id, Decimal("0.00"), Decimal("1999.01"))


def test_an_attempt_whose_answer_was_lost_is_settled_by_a_matching_event_which_records_its_intent(big_invoice):
    big_invoice.attempts.update(stripe_payment_intent_id="")  # the worker never heard Stripe's answer

    response = post(event("payment_intent.succeeded", succeeded(big_invoice, id="pi_found_later")))

    assert response.json() == {"status": "paid"}
    attempt = big_invoice.attempts.get()
    assert (attempt.status, attempt.stripe_payment_intent_id) == (PaymentAttempt.Status.SUCCEEDED, "pi_found_later")


def test_an_attempt_without_a_stripe_customer_on_record_matches_no_event(big_invoice):
    big_invoice.attempts.update(stripe_customer_id="")
    Customer.objects.filter(pk=big_invoice.customer_id).update(stripe_customer_id="")

    response = post(event("payment_intent.succeeded", succeeded(big_invoice, customer=None)))

    assert response.json() == {"status": "mismatch"}
    assert_nothing_settled(big_invoice)


# --- odd shapes: signed, but not what Stripe sends ---------------------------------------------

def _event_with(obj) -> bytes:
    return json.dumps({"id": "evt_odd", "type": "payment_intent.succeeded", "data": {"object": obj}}).encode()


ODD_OBJECTS = {
    "amount as text": lambda ok: {**ok, "amount": "199901"},
    "amount missing": lambda ok: {k: v for k, v in ok.items() if k != "amount"},
    "amount a boolean": lambda ok: {**ok, "amount": True},
    "currency missing": lambda ok: {k: v for k, v in ok.items() if k != "currency"},
    "id a number": lambda ok: {**ok, "id": 12},
    "id too long": lambda ok: {**ok, "id": "pi_" + "x" * 100},
    "metadata a list": lambda ok: {**ok, "metadata": ["tollbooth_invoice_id"]},
    "metadata value a number": lambda ok: {**ok, "metadata": {"tollbooth_invoice_id": 1, "tollbooth_attempt": "1"}},
    "customer a number": lambda ok: {**ok, "customer": 7},
    "customer object without id": lambda ok: {**ok, "customer": {"object": "customer"}},
    "last_payment_error a string": lambda ok: {**ok, "last_payment_error": "declined"},
    "object a list": lambda ok: [ok],
}


@pytest.mark.parametrize("shape", list(ODD_OBJECTS))
def test_a_signed_payment_event_of_an_odd_shape_is_a_400_and_is_not_kept(big_invoice, shape):
    response = post(_event_with(ODD_OBJECTS[shape](succeeded(big_invoice))))

    assert response.status_code == 400
    assert response.json()["code"] == "bad_payload"
    assert not StripeEvent.objects.exists()
    assert_nothing_settled(big_invoice)


@pytest.mark.parametrize("body", [
    b"[]", b"null", b"\"event\"", b"{}", b"not json", b"[" * 100_000,
    b'{"id": "evt_1", "type": "payment_intent.succeeded"}',
    b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": []}',
    b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": null}}',
    b'{"id": "", "type": "payment_intent.succeeded", "data": {"object": {}}}',
    b'{"type": "customer.created", "data": {"object": {}}}',
    b'{"id": "evt_1", "type": 5, "data": {"object": {}}}',
    b'{"id": "evt_1", "type": "setup_intent.succeeded", "data": {"object": {"customer": ["cus_1"]}}}',
])
def test_a_signed_event_of_an_odd_shape_is_a_400_json_answer_never_a_500(body):
    response = post(body)

    assert (response.status_code, response.json()["code"]) == (400, "bad_payload")
    assert not StripeEvent.objects.exists()


def test_a_signed_body_that_is_not_utf8_is_refused():
    response = post(b'{"id": "evt_\xff"}')

    assert (response.status_code, response.json()["code"]) == (400, "bad_signature")


def test_a_signature_dated_more_than_five_minutes_ahead_is_refused(big_invoice):
    payload = event("payment_intent.succeeded", succeeded(big_invoice))

    # 30 s past the tolerance: the check reads the clock after the request is built, and a busy
    # machine spent more than the one second a +301 left it (the call was then accepted).
    ahead = post(payload, signature=signed(payload, at=int(time.time()) + 330))

    assert (ahead.status_code, ahead.json()["code"]) == (400, "bad_signature")
    assert not StripeEvent.objects.exists()
    assert_nothing_settled(big_invoice)
    # A clock a minute fast is only a clock a minute fast.
    assert post(payload, signature=signed(payload, at=int(time.time()) + 60)).json() == {"status": "paid"}


def test_without_a_webhook_secret_nothing_is_accepted(big_invoice, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload = event("payment_intent.succeeded", succeeded(big_invoice))

    response = post(payload, signature=signed(payload, secret=""))

    assert (response.status_code, response.json()["code"]) == (400, "bad_signature")
    assert_nothing_settled(big_invoice)
