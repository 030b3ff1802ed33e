"""A whole month through the real API and the beat tasks, with the clock moved by time-machine.

Signup on a trial on 10 November, calls, the trial reminder, a card saved at the (embedded) Stripe,
the trial's end, an upgrade, calls still waiting in Redis at midnight, then the month close on
1 December, whose charge the card pays.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts.services import customer_signup
from billing.models import Invoice, PaymentAttempt
from billing.subscriptions import plan_change
from billing.tasks import month_close, trials_run
from metering.tasks import usage_flush
from outbox.models import OutboxTask
from tests.payments import card_on_file

from .conftest import utc

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stripe_server", "celery_outside_task")]


def calls(raw: str, count: int) -> list[int]:
    client = APIClient()
    return [client.get("/v1/geocode?q=Paris", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code for _ in range(count)]


def test_a_month_with_a_trial_a_card_and_an_upgrade_closes_to_the_exact_invoice(
    plans, time_machine, django_capture_on_commit_callbacks
):
    run = django_capture_on_commit_callbacks
    time_machine.move_to(utc(2026, 11, 10, 9), tick=False)
    with run(execute=True):
        signup = customer_signup(email="ada@example.com", company="Ada Labs", password="pw-long-enough-1", plan=plans["starter"])
    customer, raw = signup.customer, signup.issued.raw
    assert calls(raw, 30) == [200] * 30  # trial days: free, and not billable
    usage_flush.delay()

    time_machine.move_to(utc(2026, 11, 21, 10), tick=False)
    with run(execute=True):
        assert trials_run() == {"reminded": 1, "ended": 0}
    card_on_file(customer)

    time_machine.move_to(utc(2026, 11, 24, 9, 10), tick=False)
    with run(execute=True):
        assert trials_run() == {"reminded": 0, "ended": 1}
    customer.refresh_from_db()
    assert (customer.status, customer.plan) == ("active", plans["starter"])

    time_machine.move_to(utc(2026, 11, 25, 12), tick=False)
    assert calls(raw, 20) == [200] * 20
    usage_flush.delay()

    time_machine.move_to(utc(2026, 11, 26, 15), tick=False)
    with run(execute=True):
        plan_change(customer=customer, plan=plans["pro"])
    response = APIClient().get("/v1/geocode?q=Paris", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200 and response["X-RateLimit-Limit"] == str(plans["pro"].rate_per_minute)
    usage_flush.delay()

    time_machine.move_to(utc(2026, 11, 30, 23, 50), tick=False)
    assert calls(raw, 4) == [200] * 4  # still in Redis when the month ends: the close flushes them

    time_machine.move_to(utc(2026, 12, 1, 0, 30), tick=False)
    mail.outbox.clear()
    with run(execute=False) as sends:
        summary = month_close.delay().get()
    assert summary == {"period": "2026-11", "created": 1, "regenerated": 0, "skipped": 0, "issued": 1}
    with run(execute=True):  # the worker picks up what the close queued: email and charge
        for send in sends:
            send()

    invoice = Invoice.objects.get(customer=customer, period="2026-11")
    # 10-24 Nov began in the trial (15 days, free); Starter 25-26 Nov: 49 x 2/30 = 3.266..;
    # Pro 27-30 Nov (the 26th began on Starter): 199 x 4/30 = 26.533..; 25 billable calls, no overage.
    assert [(line.kind, line.amount, line.quantity) for line in invoice.lines.all()] == [
        ("base", Decimal("0.00"), 15), ("base", Decimal("3.27"), 2), ("base", Decimal("26.53"), 4)]
    assert (invoice.total, invoice.calls, invoice.status, invoice.number) == (
        Decimal("29.80"), 25, "paid", "TB-2026-000001")
    assert [m.subject for m in mail.outbox] == ["Tollbooth invoice TB-2026-000001 for 2026-11: $29.80",
                                               "Receipt: Tollbooth invoice TB-2026-000001 paid, $29.80"]
    # The close queued exactly one charge for this invoice, and the worker ran it on the saved card.
    charges = OutboxTask.objects.filter(task="billing.tasks.invoice_charge")
    assert [row.kwargs for row in charges] == [{"invoice_id": invoice.pk}]
    assert [(a.amount, a.status) for a in PaymentAttempt.objects.filter(invoice=invoice)] == [
        (Decimal("29.80"), PaymentAttempt.Status.SUCCEEDED)]
