"""Month close: batches, resumability, two runs at once, the command and the admin."""
from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import signals
from billing.models import Invoice, InvoiceLine, InvoiceNumberCounter
from billing.invoicing import invoice_generate, invoices_generate_batch, invoices_issue_batch
from billing.tasks import (
    invoice_issued_email_task, invoices_generate_all, invoices_issue_all, invoices_issued_dispatch, month_close,
)
from outbox.models import OutboxTask
from tests.factories import CustomerFactory, UserFactory, seeded_plan

from .conftest import at, usage, utc

DECEMBER_1 = utc(2026, 12, 1, 0, 30)


def customers(count: int, plan) -> list[int]:
    made = [CustomerFactory(plan=plan, created_at=utc(2026, 10, 1)) for _ in range(count)]
    for customer in made:
        usage(customer, date(2026, 11, 2), 60_000)
    return [c.pk for c in made]


@pytest.mark.django_db
def test_a_batch_costs_the_same_number_of_queries_whatever_its_size(plans):
    small, large = customers(3, plans["starter"]), customers(30, plans["starter"])
    counts = []
    with at(DECEMBER_1):
        for ids in (small, large):
            with CaptureQueriesContext(connection) as generated:
                invoices_generate_batch(customer_ids=ids, period="2026-11")
            counts.append(len(generated))
        invoices_issue_batch(period="2026-11", limit=1)  # the year's number counter is created once
        with CaptureQueriesContext(connection) as issued_small:
            invoices_issue_batch(period="2026-11", limit=3)
        with CaptureQueriesContext(connection) as issued_large:
            invoices_issue_batch(period="2026-11", limit=29)
    assert counts[0] == counts[1]
    assert len(issued_small) == len(issued_large)
    assert Invoice.objects.filter(status="open").count() == 33
    assert InvoiceLine.objects.count() == 66 and set(Invoice.objects.values_list("total", flat=True)) == {Decimal("59.00")}


@pytest.mark.django_db
def test_the_batch_and_the_one_by_one_path_write_the_same_invoice(plans):
    (batched,), (single,) = customers(1, plans["starter"]), customers(1, plans["starter"])
    with at(DECEMBER_1):
        invoices_generate_batch(customer_ids=[batched], period="2026-11")
        invoice_generate(customer=CustomerFactory._meta.model.objects.get(pk=single), period="2026-11")
    fields = ("kind", "description", "quantity", "unit_price", "amount", "plan", "starts_on", "ends_on", "position")
    a, b = (list(InvoiceLine.objects.filter(invoice__customer_id=pk).values_list(*fields)) for pk in (batched, single))
    assert a == b and len(a) == 2


@pytest.mark.django_db
def test_month_close_flushes_issues_and_queues_every_charge_and_a_rerun_changes_nothing(
    plans, django_capture_on_commit_callbacks
):
    customers(4, plans["starter"])
    CustomerFactory(plan=plans["free"], created_at=utc(2026, 10, 1))
    CustomerFactory(plan=plans["pro"], created_at=utc(2026, 12, 1, 0, 5))  # joined after the period
    with at(DECEMBER_1), django_capture_on_commit_callbacks(execute=True):
        first = month_close()
        before = list(Invoice.objects.order_by("pk").values_list("pk", "number", "status", "total"))
        second = month_close(period="2026-11")
    assert first == {"period": "2026-11", "created": 5, "regenerated": 0, "skipped": 0, "issued": 5}
    assert second == {"period": "2026-11", "created": 0, "regenerated": 0, "skipped": 5, "issued": 0}
    assert list(Invoice.objects.order_by("pk").values_list("pk", "number", "status", "total")) == before
    assert [n for _, n, _, _ in before] == [f"TB-2026-{n:06d}" for n in range(1, 6)]

    charges = OutboxTask.objects.filter(task="billing.tasks.invoice_charge")
    assert sorted(row.kwargs["invoice_id"] for row in charges) == sorted(
        Invoice.objects.filter(total__gt=0).values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_close_that_crashed_after_drafting_resumes_by_issuing_the_drafts(plans):
    customers(3, plans["starter"])
    with at(DECEMBER_1):
        invoices_generate_all(period="2026-11")  # the worker died here
        assert invoices_issue_all(period="2026-11") == 3
    assert set(Invoice.objects.values_list("status", flat=True)) == {"open"}


def _race(work, count: int = 2) -> list[BaseException]:
    barrier, errors = threading.Barrier(count), []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_generations_make_one_invoice():
    plan = seeded_plan("starter")
    customer = CustomerFactory(plan=plan, owner=UserFactory(email="race@example.com"), created_at=utc(2026, 10, 1))
    usage(customer, date(2026, 11, 2), 70_000)
    with at(DECEMBER_1):
        errors = _race(lambda: invoice_generate(customer=customer, period="2026-11"))
    assert errors == []
    invoice = Invoice.objects.get()
    assert invoice.total == Decimal("69.00") and invoice.lines.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_month_closes_make_and_number_one_invoice_per_customer():
    plan = seeded_plan("starter")
    for n in range(12):
        customer = CustomerFactory(plan=plan, owner=UserFactory(email=f"c{n}@example.com"), created_at=utc(2026, 10, 1))
        usage(customer, date(2026, 11, 2), 1_000 * n)
    with at(DECEMBER_1):
        errors = _race(lambda: (invoices_generate_all(period="2026-11", batch=5),
                                invoices_issue_all(period="2026-11", batch=5)))
    assert errors == []
    assert Invoice.objects.count() == 12 and InvoiceLine.objects.count() == 12
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"TB-2026-{n:06d}" for n in range(1, 13)]
    assert InvoiceNumberCounter.objects.get(year=2026).last == 12


@pytest.mark.django_db
def test_the_command_prints_one_line_per_invoice_and_is_safe_to_rerun(plans):
    ids = customers(2, plans["starter"])
    out = StringIO()
    with at(DECEMBER_1):
        call_command("invoices_generate", "--period", "2026-11", stdout=out)
        call_command("invoices_generate", "--period", "2026-11", stdout=out)
        single = StringIO()
        call_command("invoices_generate", "--period", "2026-11", "--customer", str(ids[1]), stdout=single)
    lines = out.getvalue().splitlines()
    expected = [f"{ids[0]} TB-2026-000001 59.00", f"{ids[1]} TB-2026-000002 59.00"]
    assert lines == expected * 2 and single.getvalue().splitlines() == expected[1:]


@pytest.mark.django_db
def test_the_command_refuses_a_month_still_running_and_an_unknown_customer(plans):
    with at(utc(2026, 11, 27)), pytest.raises(CommandError, match="2026-11 is not over yet"):
        call_command("invoices_generate", "--period", "2026-11")
    with at(DECEMBER_1), pytest.raises(CommandError, match="No customer with id 424242"):
        call_command("invoices_generate", "--period", "2026-11", "--customer", "424242")
    with pytest.raises(CommandError, match="Expected a month as YYYY-MM"):
        call_command("invoices_generate", "--period", "november")


@pytest.mark.django_db
def test_staff_mark_an_invoice_paid_and_void_another_from_the_admin(plans, client):
    ids = customers(2, plans["starter"])
    with at(DECEMBER_1):
        invoices_generate_all(period="2026-11")
        invoices_issue_all(period="2026-11")
    paid, voided = (Invoice.objects.get(customer_id=pk) for pk in ids)
    client.force_login(UserFactory(email="staff@example.com", is_staff=True, is_superuser=True))
    url = "/admin/billing/invoice/"
    assert client.post(url, {"action": "mark_paid", "_selected_action": [paid.pk]}).status_code == 302
    assert client.post(url, {"action": "void", "_selected_action": [voided.pk]}).status_code == 302
    paid.refresh_from_db()
    voided.refresh_from_db()
    assert (paid.status, voided.status) == ("paid", "void")
    page = client.get(f"/admin/billing/invoice/{paid.pk}/change/")
    assert page.status_code == 200 and "Starter, 1–30 Nov".encode() in page.content and b"name=\"lines-0-amount\"" not in page.content
    assert client.get("/admin/billing/planchange/").status_code == 200
    assert client.get("/admin/billing/stripeevent/").status_code == 200


@pytest.mark.django_db
def test_a_redelivered_dispatch_sends_each_signal_email_and_charge_once(plans, django_capture_on_commit_callbacks):
    ids = customers(1, plans["starter"]) + [CustomerFactory(plan=plans["free"], created_at=utc(2026, 10, 1)).pk]
    heard = []

    def hear(signal_name):
        return lambda sender, invoice, **kwargs: heard.append((signal_name, invoice.customer_id))

    issued, paid = hear("issued"), hear("paid")
    signals.invoice_issued.connect(issued)
    signals.invoice_paid.connect(paid)
    try:
        with at(DECEMBER_1), django_capture_on_commit_callbacks(execute=False) as sends:
            invoices_generate_all(period="2026-11")
            invoices_issue_all(period="2026-11")
        assert heard == []  # nothing is announced before the issue commits
        for send in sends:
            send()
        invoices_issued_dispatch(invoice_ids=list(Invoice.objects.values_list("pk", flat=True)))
    finally:
        signals.invoice_issued.disconnect(issued)
        signals.invoice_paid.disconnect(paid)
    assert sorted(heard) == sorted([("issued", ids[0]), ("issued", ids[1]), ("paid", ids[1])])
    assert OutboxTask.objects.filter(task="billing.tasks.invoice_charge").count() == 1
    # The email is a task of its own (the email queue), queued once per invoice and sent once
    # however often it is delivered.
    emails = OutboxTask.objects.filter(task="billing.tasks.invoice_issued_email_task")
    assert sorted(row.kwargs["invoice_id"] for row in emails) == sorted(Invoice.objects.values_list("pk", flat=True))
    assert [m for m in mail.outbox if m.subject.startswith("Tollbooth invoice")] == []
    for row in list(emails) * 2:
        invoice_issued_email_task(**row.kwargs)
    assert len([m for m in mail.outbox if m.subject.startswith("Tollbooth invoice")]) == 2
