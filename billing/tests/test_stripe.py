"""Cards, charges, webhooks and dunning against the embedded Stripe (localstripe) with the real SDK."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import stripe
from django.core import mail
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Customer
from accounts.services import api_key_issue
from billing import cards, charging, gateway
from core.periods import period_of, period_previous
from billing.models import Invoice, InvoiceLine, PaymentAttempt, PaymentMethod, StripeEvent
from billing.invoicing import invoice_generate, invoice_issue, invoice_mark_paid
from billing.tasks import invoice_charge, invoices_dunning_run
from metering.keyconfig import key_config_forget_local
from tests.factories import CustomerFactory, seeded_plan
from tests.payments import (
    DECLINED_CHARGE_CARD, TEST_CARD, card_confirm_as_stripe_js, card_on_file, stripe_list, stripe_object, wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("celery_outside_task")]


@pytest.fixture
def starter_customer(stripe_server):
    return CustomerFactory(plan=seeded_plan("starter"), created_at=timezone.now() - timedelta(days=70))


def open_invoice(customer: Customer, total: str = "49.00") -> Invoice:
    """An issued invoice written directly, so the test decides when it is charged."""
    invoice = Invoice.objects.create(
        customer=customer, period=period_previous(period_of(timezone.now())), number=f"TB-TEST-{customer.pk:06d}",
        status=Invoice.Status.OPEN, subtotal=Decimal(total), total=Decimal(total), plan=customer.plan,
        issued_at=timezone.now(),
    )
    InvoiceLine.objects.create(invoice=invoice, kind=InvoiceLine.Kind.BASE, description="Starter", quantity=1,
                               unit_price=Decimal(total), amount=Decimal(total))
    return invoice


def intents_for(invoice: Invoice) -> list[dict]:
    return [pi for pi in stripe_list("payment_intents") if pi["metadata"].get("tollbooth_invoice_id") == str(invoice.pk)]


@pytest.fixture
def lose_payment_responses(monkeypatch):
    """The network drops Stripe's answer to a charge after Stripe acted on it (n times)."""
    client_class = type(stripe.new_default_http_client())
    original = client_class.request
    budget = {"left": 0}

    def request(self, method, url, headers, post_data=None):
        answer = original(self, method, url, headers, post_data)
        if method == "post" and url.endswith("/v1/payment_intents") and budget["left"] > 0:
            budget["left"] -= 1
            raise stripe.APIConnectionError("Connection reset by peer (after the request was sent)")
        return answer

    monkeypatch.setattr(client_class, "request", request)

    def lose(times: int = 1) -> None:
        budget["left"] = times

    return lose


def api_call(raw_key: str):
    return APIClient().get("/v1/geocode?q=Paris", HTTP_AUTHORIZATION=f"Bearer {raw_key}")


def test_a_saved_card_pays_the_issued_invoice_and_stripes_signed_webhook_agrees(starter_customer, stripe_webhooks):
    method = card_on_file(starter_customer)
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "4242", 12, 2031)
    fingerprint = stripe_object("payment_methods", method.stripe_payment_method_id)["card"]["fingerprint"]
    assert method.fingerprint == fingerprint and len(fingerprint) >= 16

    invoice = invoice_generate(customer=starter_customer, period=period_previous(period_of(timezone.now())))
    assert invoice.total == Decimal("49.00")
    invoice = invoice_issue(invoice=invoice)  # after commit: email, then the charge task

    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_by) == (Invoice.Status.PAID, "Visa ••4242")
    attempt = invoice.attempts.get()
    assert (attempt.number, attempt.status, attempt.amount) == (1, PaymentAttempt.Status.SUCCEEDED, Decimal("49.00"))
    stripe_customer_id = Customer.objects.get(pk=starter_customer.pk).stripe_customer_id
    assert (attempt.stripe_customer_id, attempt.currency) == (stripe_customer_id, "usd")
    [intent] = intents_for(invoice)
    assert (intent["id"], intent["amount"], intent["currency"], intent["status"]) == (
        attempt.stripe_payment_intent_id, 4900, "usd", "succeeded")
    # localstripe delivers payment_intent.succeeded, signed with our secret, to the live server.
    delivered = StripeEvent.objects.filter(type="payment_intent.succeeded", payload__data__object__id=intent["id"])
    assert wait_until(delivered.exists)
    assert delivered.get().status == StripeEvent.Status.PROCESSED
    assert invoice.attempts.count() == 1 and len(intents_for(invoice)) == 1


def test_the_webhook_settles_a_charge_whose_answer_was_lost(starter_customer, stripe_webhooks, lose_payment_responses):
    card_on_file(starter_customer)
    invoice = open_invoice(starter_customer)
    lose_payment_responses(1)

    with pytest.raises(gateway.StripeUnavailable):
        charging.invoice_charge_run(invoice_id=invoice.pk)  # the worker never hears Stripe's answer
    attempt = invoice.attempts.get()
    assert (attempt.status, attempt.stripe_payment_intent_id) == (PaymentAttempt.Status.PENDING, "")

    assert wait_until(lambda: Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID)
    attempt.refresh_from_db()
    [intent] = intents_for(invoice)
    assert (attempt.status, attempt.stripe_payment_intent_id) == (PaymentAttempt.Status.SUCCEEDED, intent["id"])
    # The webhook's thread runs the receipt email as an eager task: let it finish before this
    # thread runs one (see celery_outside_task). Its thread may still be inside that task when
    # the mail is out, and Celery's "inside a task" flag is process-wide: this thread is not in
    # a task, so its .get() may block.
    assert wait_until(lambda: any(m.subject.startswith("Receipt:") for m in mail.outbox))
    retry = invoice_charge.delay(invoice_id=invoice.pk)  # the task's retry
    assert retry.get(disable_sync_subtasks=False) == "skipped"
    assert len(intents_for(invoice)) == 1


def test_a_retried_charge_task_finds_its_payment_intent_instead_of_charging_again(starter_customer, lose_payment_responses):
    card_on_file(starter_customer)
    invoice = open_invoice(starter_customer, total="123.45")
    lose_payment_responses(1)

    # Eager Celery runs the autoretry at once (throw=False lets apply() follow the retry): the
    # first try created the intent but never heard back, the second finds it by its metadata.
    result = invoice_charge.apply(kwargs={"invoice_id": invoice.pk}, throw=False)
    assert result.get() == "paid"

    invoice.refresh_from_db()
    [intent] = intents_for(invoice)
    assert invoice.status == Invoice.Status.PAID
    assert intent["amount"] == 12345
    assert list(invoice.attempts.values_list("number", "status", "stripe_payment_intent_id")) == [
        (1, PaymentAttempt.Status.SUCCEEDED, intent["id"])]
    assert len([c for c in stripe_list("charges") if c["payment_intent"] == intent["id"]]) == 1


def test_a_declined_card_means_past_due_free_limits_then_402_until_a_new_card_pays(starter_customer, time_machine, settings):
    free, starter = seeded_plan("free"), starter_customer.plan
    raw = api_key_issue(customer=starter_customer, name="prod").raw
    card_on_file(starter_customer, DECLINED_CHARGE_CARD)
    invoice = open_invoice(starter_customer)
    assert api_call(raw)["X-RateLimit-Limit"] == str(starter.rate_per_minute)

    assert invoice_charge.delay(invoice_id=invoice.pk).get() == "failed"

    starter_customer.refresh_from_db()
    invoice.refresh_from_db()
    attempt = invoice.attempts.get()
    assert (attempt.status, attempt.failure_code) == (PaymentAttempt.Status.FAILED, "card_declined")
    assert starter_customer.status == Customer.Status.PAST_DUE
    assert starter_customer.past_due_since == attempt.finished_at
    assert invoice.status == Invoice.Status.OPEN
    assert invoice.next_charge_at == attempt.finished_at + timedelta(days=1)
    [email] = [m for m in mail.outbox if "Payment failed" in m.subject]
    assert email.to == [starter_customer.email] and invoice.number in email.subject
    response = api_call(raw)
    assert response.status_code == 200
    assert response["X-RateLimit-Limit"] == str(free.rate_per_minute)  # grace: the Free plan's limits

    time_machine.move_to(starter_customer.past_due_since + timedelta(days=settings.BILLING_GRACE_DAYS, minutes=1))
    response = api_call(raw)
    assert (response.status_code, response.json()["code"]) == (402, "payment_required")

    card_on_file(starter_customer, TEST_CARD)  # a new card: the open invoice is charged at once

    invoice.refresh_from_db()
    starter_customer.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert [a.status for a in invoice.attempts.all()][-1] == PaymentAttempt.Status.SUCCEEDED
    assert (starter_customer.status, starter_customer.past_due_since) == (Customer.Status.ACTIVE, None)
    # A worker that has not just refused this key (this test process cached the 402 for
    # KEY_CACHE_SECONDS, which time-machine does not move) serves it at the full plan again.
    key_config_forget_local()
    response = api_call(raw)
    assert (response.status_code, response["X-RateLimit-Limit"]) == (200, str(starter.rate_per_minute))


def test_dunning_retries_on_days_1_3_and_5_then_gives_up(starter_customer, time_machine):
    card_on_file(starter_customer, DECLINED_CHARGE_CARD)
    invoice = open_invoice(starter_customer)
    invoice_charge.delay(invoice_id=invoice.pk)
    first_failure = invoice.attempts.get().finished_at

    assert invoices_dunning_run.delay().get() == 0  # nothing due yet
    for day, next_day in ((1, 3), (3, 5)):
        time_machine.move_to(first_failure + timedelta(days=day, minutes=5))
        assert invoices_dunning_run.delay().get() == 1
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.OPEN
        assert invoice.next_charge_at == first_failure + timedelta(days=next_day)
    time_machine.move_to(first_failure + timedelta(days=5, minutes=5))
    assert invoices_dunning_run.delay().get() == 1

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.UNCOLLECTIBLE and invoice.next_charge_at is None
    assert invoice.attempts.filter(status=PaymentAttempt.Status.FAILED).count() == 4
    assert len(intents_for(invoice)) == 4
    assert invoices_dunning_run.delay().get() == 0
    assert len([m for m in mail.outbox if "Payment failed" in m.subject]) == 4


def test_staff_marking_an_invoice_paid_makes_a_past_due_customer_active_at_once(starter_customer):
    card_on_file(starter_customer, DECLINED_CHARGE_CARD)
    invoice = open_invoice(starter_customer)
    invoice_charge.delay(invoice_id=invoice.pk)
    starter_customer.refresh_from_db()
    version = starter_customer.config_version
    assert starter_customer.status == Customer.Status.PAST_DUE

    invoice_mark_paid(invoice=invoice)

    starter_customer.refresh_from_db()
    assert starter_customer.status == Customer.Status.ACTIVE
    assert starter_customer.config_version > version
    assert invoices_dunning_run.delay().get() == 0


def test_a_customer_stripe_forgot_is_recreated_and_asked_for_a_card_again(starter_customer):
    card_on_file(starter_customer)
    starter_customer.refresh_from_db()
    Customer.objects.filter(pk=starter_customer.pk).update(stripe_customer_id="cus_lostInAReset")

    new_id = charging.stripe_customer_ensure(customer=starter_customer)

    assert new_id.startswith("cus_") and new_id != "cus_lostInAReset"
    assert Customer.objects.get(pk=starter_customer.pk).stripe_customer_id == new_id
    assert not PaymentMethod.objects.filter(customer=starter_customer).exists()
    assert charging.stripe_customer_ensure(customer=starter_customer) == new_id


def test_a_card_refused_at_setup_saves_nothing(starter_customer):
    intent = cards.card_setup_start(customer=starter_customer)
    answer = card_confirm_as_stripe_js(client_secret=intent.client_secret, number="4000000000000002")
    assert answer["error"]["code"] == "card_declined"
    starter_customer.refresh_from_db()

    with pytest.raises(cards.CardSetupFailed, match="not saved"):
        cards.card_setup_confirm(customer=starter_customer, setup_intent_id=intent.id)
    assert not PaymentMethod.objects.filter(customer=starter_customer).exists()


def test_another_customers_setup_intent_cannot_put_its_card_on_this_account(starter_customer):
    other = CustomerFactory(plan=starter_customer.plan)
    intent = cards.card_setup_start(customer=other)
    card_confirm_as_stripe_js(client_secret=intent.client_secret)
    charging.stripe_customer_ensure(customer=starter_customer)
    starter_customer.refresh_from_db()

    with pytest.raises(cards.CardSetupFailed, match="does not belong"):
        cards.card_setup_confirm(customer=starter_customer, setup_intent_id=intent.id)
    assert not PaymentMethod.objects.filter(customer=starter_customer).exists()


def test_stripe_unreachable_leaves_the_invoice_open_and_a_later_try_charges_once(starter_customer, settings):
    card_on_file(starter_customer)
    invoice = open_invoice(starter_customer)
    reachable = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: connection refused

    with pytest.raises(gateway.StripeUnavailable):
        charging.invoice_charge_run(invoice_id=invoice.pk)

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    assert list(invoice.attempts.values_list("status", flat=True)) == [PaymentAttempt.Status.PENDING]
    settings.STRIPE_API_BASE = reachable
    assert charging.invoice_charge_run(invoice_id=invoice.pk).outcome == "paid"
    assert invoice.attempts.count() == 1 and len(intents_for(invoice)) == 1


def test_two_workers_charging_one_invoice_at_once_charge_it_once(starter_customer, monkeypatch):
    import threading

    card_on_file(starter_customer)
    invoice = open_invoice(starter_customer)
    client_class = type(stripe.new_default_http_client())
    original = client_class.request
    in_stripe, let_go = threading.Event(), threading.Event()

    def slow_charge(self, method, url, headers, post_data=None):
        if method == "post" and url.endswith("/v1/payment_intents"):
            in_stripe.set()
            let_go.wait(10)  # Stripe is slow to answer the first worker
        return original(self, method, url, headers, post_data)

    monkeypatch.setattr(client_class, "request", slow_charge)
    outcomes = []

    def first_worker():
        try:
            outcomes.append(charging.invoice_charge_run(invoice_id=invoice.pk).outcome)
        finally:
            connection.close()  # this thread's own database connection

    first = threading.Thread(target=first_worker)
    first.start()
    assert in_stripe.wait(10)
    second = charging.invoice_charge_run(invoice_id=invoice.pk).outcome  # meanwhile, a second worker
    let_go.set()
    first.join(10)

    assert (outcomes, second) == (["paid"], "busy")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert invoice.attempts.count() == 1 and len(intents_for(invoice)) == 1


def test_an_invoice_for_a_customer_without_a_card_fails_at_once_and_asks_for_one(starter_customer):
    invoice = open_invoice(starter_customer)

    assert invoice_charge.delay(invoice_id=invoice.pk).get() == "failed"

    attempt = invoice.attempts.get()
    assert (attempt.status, attempt.failure_code, attempt.stripe_payment_intent_id) == (
        PaymentAttempt.Status.FAILED, "no_card", "")
    assert Customer.objects.get(pk=starter_customer.pk).status == Customer.Status.PAST_DUE
    [email] = mail.outbox
    assert "Payment failed" in email.subject and "/portal/billing/" in email.body
    assert intents_for(invoice) == []


@pytest.mark.parametrize("status,total", [(Invoice.Status.PAID, "49.00"), (Invoice.Status.VOID, "49.00"),
                                          (Invoice.Status.DRAFT, "49.00"), (Invoice.Status.OPEN, "0.00")])
def test_nothing_is_charged_for_an_invoice_that_owes_nothing(starter_customer, status, total):
    card_on_file(starter_customer)
    invoice = open_invoice(starter_customer, total=total)
    Invoice.objects.filter(pk=invoice.pk).update(status=status)

    assert invoice_charge.delay(invoice_id=invoice.pk).get() == "skipped"
    assert not invoice.attempts.exists() and intents_for(invoice) == []


def test_a_card_stripe_no_longer_has_fails_the_attempt_instead_of_retrying_forever(starter_customer):
    card_on_file(starter_customer)
    PaymentMethod.objects.filter(customer=starter_customer).update(stripe_payment_method_id="pm_goneAfterAReset")
    invoice = open_invoice(starter_customer)

    assert invoice_charge.delay(invoice_id=invoice.pk).get() == "failed"

    attempt = invoice.attempts.get()
    assert (attempt.status, attempt.failure_code) == (PaymentAttempt.Status.FAILED, "resource_missing")
    assert Invoice.objects.get(pk=invoice.pk).next_charge_at is not None  # dunning will ask again


def test_the_month_close_charges_the_saved_card_exactly_the_invoice_total(starter_customer, time_machine):
    from core.periods import day_start, period_bounds
    from billing.tasks import month_close

    card_on_file(starter_customer)
    period = period_of(timezone.now())
    time_machine.move_to(day_start(period_bounds(period)[1]) + timedelta(minutes=30))  # 00:30 on the 1st

    summary = month_close.delay().get()

    assert (summary["period"], summary["issued"]) == (period, 1)
    invoice = Invoice.objects.get(customer=starter_customer, period=period)
    [intent] = intents_for(invoice)
    assert invoice.status == Invoice.Status.PAID and invoice.total == Decimal("49.00")
    assert (intent["amount"], intent["status"]) == (4900, "succeeded")
    # The invoice email and, the charge having gone through, the receipt: one each.
    assert sorted((m.subject.split()[0], m.to) for m in mail.outbox) == [
        ("Receipt:", [starter_customer.email]), ("Tollbooth", [starter_customer.email])]


def test_the_same_card_saved_on_two_accounts_has_one_fingerprint(starter_customer):
    twin, other = CustomerFactory(plan=starter_customer.plan), CustomerFactory(plan=starter_customer.plan)

    prints = [card_on_file(c, number).fingerprint
              for c, number in ((starter_customer, TEST_CARD), (twin, TEST_CARD), (other, "5555555555554444"))]

    assert prints[0] == prints[1] != prints[2] and "" not in prints


def test_the_look_up_for_a_lost_intent_reads_one_page_of_the_customers_charges_not_every_intent(
    starter_customer, lose_payment_responses, monkeypatch
):
    other = CustomerFactory(plan=starter_customer.plan)
    other_card = card_on_file(other)
    other.refresh_from_db()
    for n in range(gateway.INTENT_FIND_LIMIT + 5):  # Stripe holds more than one page of intents
        gateway.payment_intent_create(
            amount=Decimal("1.00"), currency="usd", stripe_customer_id=other.stripe_customer_id,
            payment_method_id=other_card.stripe_payment_method_id, invoice_id=0, attempt_number=n,
            idempotency_key=f"other:{n}")
    card_on_file(starter_customer)
    invoice = open_invoice(starter_customer)
    lose_payment_responses(1)
    client_class = type(stripe.new_default_http_client())
    answered = client_class.request
    asked = []

    def request(self, method, url, headers, post_data=None):
        asked.append((method, url))
        return answered(self, method, url, headers, post_data)

    monkeypatch.setattr(client_class, "request", request)

    assert invoice_charge.apply(kwargs={"invoice_id": invoice.pk}, throw=False).get() == "paid"

    # Each try looks before it charges: the first finds nothing and charges (its answer lost),
    # the retry finds that charge in one page of this customer's charges, then reads its intent.
    reads = [url for method, url in asked if method == "get" and "/v1/customers/" not in url]
    lists = [url for url in reads if "/v1/charges?" in url]
    customer_id = Customer.objects.get(pk=starter_customer.pk).stripe_customer_id
    assert len(lists) == 2 and all(f"customer={customer_id}" in url and "limit=20" in url for url in lists)
    assert len(reads) == 3 and "/v1/payment_intents/pi_" in reads[-1]
    assert not [url for url in reads if "/v1/payment_intents?" in url or "starting_after" in url]
    assert len(intents_for(invoice)) == 1
