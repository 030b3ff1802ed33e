"""Dunning and past-due (README "Billing"): a retry waits for its day, each due charge is claimed once,
an issued invoice nobody charged is found, and past-due ends with the last unpaid failure."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Customer
from billing.invoicing import invoice_mark_paid, invoice_mark_uncollectible, invoice_void
from billing.models import Invoice, InvoiceLine, PaymentAttempt, PaymentMethod
from billing.charging import card_label
from billing.tasks import invoice_charge, invoices_dunning_run
from tests.factories import CustomerFactory, UserFactory, seeded_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_outside_task")]


@pytest.fixture
def customer(db):
    """Active on Starter, no card on file: every charge fails at once, without Stripe."""
    return CustomerFactory(plan=seeded_plan("starter"), created_at=timezone.now() - timedelta(days=90))


def open_invoice(customer: Customer, period: str, *, total: str = "49.00", issued_ago=timedelta(0)) -> Invoice:
    invoice = Invoice.objects.create(customer=customer, period=period, number=f"TB-TEST-{customer.pk}-{period}",
                                     status=Invoice.Status.OPEN, subtotal=Decimal(total), total=Decimal(total),
                                     plan=customer.plan, issued_at=timezone.now() - issued_ago)
    InvoiceLine.objects.create(invoice=invoice, kind=InvoiceLine.Kind.BASE, description="Starter", quantity=1,
                               unit_price=Decimal(total), amount=Decimal(total))
    return invoice


def fail(invoice: Invoice) -> PaymentAttempt:
    assert invoice_charge.delay(invoice_id=invoice.pk).get() == "failed"
    return invoice.attempts.order_by("number").last()


def state(customer: Customer) -> tuple:
    customer.refresh_from_db()
    return customer.status, customer.past_due_since


def failed_emails() -> list[str]:
    return [m.subject for m in mail.outbox if m.subject.startswith("Payment failed")]


# --- past due -------------------------------------------------------------------------------

def test_paying_one_of_two_failed_invoices_keeps_the_customer_past_due_and_its_grace_period(customer, time_machine):
    october, november = open_invoice(customer, "2026-10"), open_invoice(customer, "2026-11")
    first = fail(october)
    time_machine.move_to(timezone.now() + timedelta(days=2))
    fail(november)
    assert state(customer) == (Customer.Status.PAST_DUE, first.finished_at)

    invoice_mark_paid(invoice=november, paid_by="bank transfer")

    # October is still unpaid: past due, and its grace period still counts from October's failure.
    assert state(customer) == (Customer.Status.PAST_DUE, first.finished_at)

    invoice_mark_paid(invoice=october, paid_by="bank transfer")

    assert state(customer) == (Customer.Status.ACTIVE, None)


def test_an_uncollectible_invoice_keeps_the_customer_past_due_until_it_is_voided(customer):
    october, november = open_invoice(customer, "2026-10"), open_invoice(customer, "2026-11")
    first = fail(october)
    invoice_mark_uncollectible(invoice=october)
    fail(november)

    invoice_mark_paid(invoice=november)
    assert state(customer) == (Customer.Status.PAST_DUE, first.finished_at)

    invoice_void(invoice=october)
    assert state(customer) == (Customer.Status.ACTIVE, None)


def test_an_open_invoice_not_yet_charged_does_not_keep_the_customer_past_due(customer):
    october = open_invoice(customer, "2026-10")
    open_invoice(customer, "2026-11")  # issued, its charge not tried yet: nothing has failed
    fail(october)

    invoice_mark_paid(invoice=october)

    assert state(customer) == (Customer.Status.ACTIVE, None)


# --- retries wait for their day --------------------------------------------------------------

def test_a_charge_before_its_retry_day_is_skipped_and_the_day_3_retry_follows_day_1(customer, time_machine):
    invoice = open_invoice(customer, "2026-11")
    first = fail(invoice).finished_at

    assert invoice_charge.delay(invoice_id=invoice.pk).get() == "skipped"  # a stray second delivery
    time_machine.move_to(first + timedelta(hours=23))
    assert invoices_dunning_run.delay().get() == 0
    assert invoice.attempts.count() == 1

    time_machine.move_to(first + timedelta(days=1, minutes=20))
    assert invoices_dunning_run.delay().get() == 1
    assert invoices_dunning_run.delay().get() == 0  # a second beat in the same hour
    assert invoice_charge.delay(invoice_id=invoice.pk).get() == "skipped"

    invoice.refresh_from_db()
    assert invoice.attempts.count() == 2
    assert invoice.next_charge_at == first + timedelta(days=3)
    assert len(failed_emails()) == 2  # one per failed attempt


# --- the sweep ------------------------------------------------------------------------------

def test_an_issued_invoice_nobody_charged_is_charged_by_the_next_dunning_run(customer):
    lost = open_invoice(customer, "2026-10", issued_ago=timedelta(minutes=20))
    other = CustomerFactory(plan=customer.plan)
    just_issued = open_invoice(other, "2026-11", issued_ago=timedelta(minutes=2))
    nothing_owed = open_invoice(CustomerFactory(plan=customer.plan), "2026-11", total="0.00",
                                issued_ago=timedelta(hours=2))
    draft = open_invoice(CustomerFactory(plan=customer.plan), "2026-11", issued_ago=timedelta(hours=2))
    Invoice.objects.filter(pk=draft.pk).update(status=Invoice.Status.DRAFT)

    assert invoices_dunning_run.delay().get() == 1

    assert list(lost.attempts.values_list("number", "status", "failure_code")) == [
        (1, PaymentAttempt.Status.FAILED, "no_card")]
    assert not PaymentAttempt.objects.exclude(invoice=lost).exists()
    assert invoices_dunning_run.delay().get() == 0
    assert (just_issued.attempts.count(), nothing_owed.attempts.count(), draft.attempts.count()) == (0, 0, 0)
    assert len(failed_emails()) == 1


# --- how it was paid --------------------------------------------------------------------------

def test_staff_marking_an_invoice_paid_in_admin_records_a_bank_transfer(customer, client):
    invoice = open_invoice(customer, "2026-11")
    client.force_login(UserFactory(email="staff@example.com", is_staff=True, is_superuser=True))

    response = client.post("/admin/billing/invoice/", {"action": "mark_paid", "_selected_action": [invoice.pk]})

    assert response.status_code == 302
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_by) == (Invoice.Status.PAID, "bank transfer")


def test_an_invoice_paid_by_the_service_without_a_payment_says_nothing_about_how(customer):
    invoice = invoice_mark_paid(invoice=open_invoice(customer, "2026-11"))
    assert (invoice.status, invoice.paid_by) == (Invoice.Status.PAID, "")


@pytest.mark.parametrize("brand,last4,label", [
    ("visa", "4242", "Visa ••4242"), ("amex", "0005", "American Express ••0005"),
    ("mastercard", "4444", "Mastercard ••4444"), ("some_new_brand", "1111", "Some New Brand ••1111"),
    ("", "1111", "Card ••1111"),
])
def test_a_card_reads_as_its_brand_and_last_four_digits(brand, last4, label):
    assert card_label(PaymentMethod(brand=brand, last4=last4)) == label
