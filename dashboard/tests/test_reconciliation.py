"""Nightly reconciliation: each disagreement between Redis, Postgres, the invoice and the charge
is stored once, updated by the next run, and dropped when the figures agree again.

The invoice is checked against the rule recomputed from the raw tables (dashboard.services), not
with billing's rating: a check that shares the function under test agrees with its mistakes."""
from __future__ import annotations

from datetime import date, datetime, timezone as dt_timezone
from decimal import Decimal

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_redis import get_redis_connection

from billing.models import Invoice, InvoiceLine, PaymentAttempt, PlanChange
from billing.invoicing import invoice_generate
from dashboard.models import ReconciliationIssue
from dashboard.services import reconciliation_run
from dashboard.tasks import usage_reconcile_nightly
from metering import connection
from metering.usage_fields import month_counter_key
from metering.usage_fields import usage_field
from tests.factories import (
    CustomerFactory, InvoiceFactory, InvoiceLineFactory, PlanChangeFactory, UsageRecordFactory, UserFactory, seeded_plan,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=dt_timezone.utc)
Source = ReconciliationIssue.Source


@pytest.fixture
def old_customer(starter_plan):
    return CustomerFactory(plan=starter_plan, created_at=datetime(2026, 1, 1, tzinfo=dt_timezone.utc))


def _redis_holds(customer_id: int, *, counter: int, pending: int, day: date = date(2026, 11, 14)) -> None:
    redis = get_redis_connection("default")
    redis.set(month_counter_key(customer_id=customer_id, day=day), counter)
    redis.hset(connection.customer_key(customer_id, "pending"), usage_field(day=day, product="geocode", key_id=7), pending)


def test_a_redis_counter_that_disagrees_with_postgres_and_the_unflushed_calls_is_an_issue(old_customer):
    UsageRecordFactory(customer=old_customer, day=date(2026, 11, 2), calls=100)
    _redis_holds(old_customer.pk, counter=150, pending=20)

    with time_machine.travel(NOW, tick=False):
        result = reconciliation_run(period="2026-11")

    assert result.redis_checked and result.customers == 1
    issue = ReconciliationIssue.objects.get()
    assert (issue.customer, issue.period, issue.source) == (old_customer, "2026-11", Source.REDIS)
    assert (issue.expected, issue.found, issue.difference) == (Decimal("120"), Decimal("150"), Decimal("30"))


def test_an_issue_is_updated_by_the_next_run_and_dropped_once_the_figures_agree(old_customer):
    UsageRecordFactory(customer=old_customer, day=date(2026, 11, 2), calls=100)
    _redis_holds(old_customer.pk, counter=150, pending=20)
    with time_machine.travel(NOW, tick=False):
        reconciliation_run(period="2026-11")
        _redis_holds(old_customer.pk, counter=160, pending=20)
        reconciliation_run(period="2026-11")
    assert ReconciliationIssue.objects.get().found == Decimal("160")

    _redis_holds(old_customer.pk, counter=120, pending=20)
    with time_machine.travel(NOW, tick=False):
        assert reconciliation_run(period="2026-11").drifts == ()
    assert not ReconciliationIssue.objects.exists()


def test_matching_figures_and_a_missing_counter_store_nothing(old_customer, starter_plan):
    UsageRecordFactory(customer=old_customer, day=date(2026, 11, 2), calls=100)
    _redis_holds(old_customer.pk, counter=125, pending=25)
    lost = CustomerFactory(plan=starter_plan, created_at=datetime(2026, 1, 1, tzinfo=dt_timezone.utc))
    UsageRecordFactory(customer=lost, day=date(2026, 11, 2), calls=100)  # Redis lost its counter

    with time_machine.travel(NOW, tick=False):
        assert reconciliation_run(period="2026-11").drifts == ()
    assert not ReconciliationIssue.objects.exists()


def test_a_closed_period_compares_invoice_calls_the_overage_line_and_the_charge(old_customer, starter_plan):
    UsageRecordFactory(customer=old_customer, day=date(2026, 10, 3), calls=60_000)  # a late flush after the close
    invoice = InvoiceFactory(customer=old_customer, period="2026-10", status="paid", calls=55_000, total=Decimal("54.00"))
    InvoiceLineFactory(invoice=invoice, amount=Decimal("49.00"))
    InvoiceLineFactory(invoice=invoice, kind=InvoiceLine.Kind.OVERAGE, amount=Decimal("5.00"))
    PaymentAttempt.objects.create(invoice=invoice, number=1, amount=Decimal("45.00"), status="succeeded")
    good = CustomerFactory(plan=starter_plan, created_at=datetime(2026, 1, 1, tzinfo=dt_timezone.utc))
    UsageRecordFactory(customer=good, day=date(2026, 10, 3), calls=51_000)
    fine = InvoiceFactory(customer=good, period="2026-10", status="paid", calls=51_000, total=Decimal("50.00"))
    InvoiceLineFactory(invoice=fine, kind=InvoiceLine.Kind.OVERAGE, amount=Decimal("1.00"))
    PaymentAttempt.objects.create(invoice=fine, number=1, amount=Decimal("50.00"), status="succeeded")

    with time_machine.travel(NOW, tick=False):
        reconciliation_run(period="2026-10")

    found = {i.source: (i.customer_id, i.expected, i.found, i.invoice_id) for i in ReconciliationIssue.objects.all()}
    assert found == {
        Source.INVOICE_CALLS: (old_customer.pk, Decimal("60000"), Decimal("55000"), invoice.pk),
        Source.INVOICE_OVERAGE: (old_customer.pk, Decimal("10.00"), Decimal("5.00"), invoice.pk),
        Source.STRIPE: (old_customer.pk, Decimal("54.00"), Decimal("45.00"), invoice.pk),
    }


def test_calls_made_during_a_trial_are_left_out_of_the_invoice_comparison_as_billing_leaves_them_out(starter_plan):
    trial = CustomerFactory(plan=starter_plan, created_at=datetime(2026, 9, 28, 9, 0, tzinfo=dt_timezone.utc),
                            trial_ends_at=datetime(2026, 10, 12, 9, 0, tzinfo=dt_timezone.utc))
    for day, calls in ((date(2026, 10, 1), 700), (date(2026, 10, 12), 300), (date(2026, 10, 13), 4_000)):
        UsageRecordFactory(customer=trial, day=day, calls=calls)
    with time_machine.travel(NOW, tick=False):
        invoice = invoice_generate(customer=trial, period="2026-10")
        assert invoice.calls == 4_000  # 1 and 12 October began inside the trial
        assert reconciliation_run(period="2026-10").drifts == ()
        InvoiceLine.objects.filter(invoice=invoice).delete()
        Invoice.objects.filter(pk=invoice.pk).update(calls=5_000)
        drifts = reconciliation_run(period="2026-10").drifts

    assert [(d.source, d.expected, d.found) for d in drifts] == [(Source.INVOICE_CALLS, Decimal("4000"), Decimal("5000"))]


def test_an_open_period_does_not_compare_invoices(old_customer):
    InvoiceFactory(customer=old_customer, period="2026-11", status="draft", calls=5)
    with time_machine.travel(NOW, tick=False):
        assert reconciliation_run(period="2026-11").drifts == ()


def test_redis_being_down_skips_the_counters_but_keeps_their_issues(old_customer, settings):
    ReconciliationIssue.objects.create(customer=old_customer, period="2026-11", source=Source.REDIS,
                                       expected=1, found=2)
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0",
                                   "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2}}}

    with time_machine.travel(NOW, tick=False):
        result = reconciliation_run(period="2026-11")

    assert not result.redis_checked
    assert ReconciliationIssue.objects.count() == 1


def test_the_command_prints_each_drift_and_refuses_a_bad_period(old_customer, capsys):
    UsageRecordFactory(customer=old_customer, day=date(2026, 11, 2), calls=100)
    _redis_holds(old_customer.pk, counter=99, pending=0)
    with time_machine.travel(NOW, tick=False):
        call_command("usage_reconcile", "--period", "2026-11")
    out = capsys.readouterr().out
    assert f"{old_customer.pk}\tredis\texpected 100\tfound 99" in out
    assert "2026-11: 1 customers checked, 1 drifts." in out

    with pytest.raises(CommandError, match="Period must look like 2026-11"):
        call_command("usage_reconcile", "--period", "November")


def test_the_nightly_task_checks_last_month_and_this_one(old_customer):
    UsageRecordFactory(customer=old_customer, day=date(2026, 10, 3), calls=10)
    InvoiceFactory(customer=old_customer, period="2026-10", status="open", calls=9, total=Decimal("49.00"))
    _redis_holds(old_customer.pk, counter=3, pending=0)

    with time_machine.travel(NOW, tick=False):
        assert usage_reconcile_nightly.delay().get() == 2

    assert set(ReconciliationIssue.objects.values_list("period", "source")) == {
        ("2026-10", Source.INVOICE_CALLS), ("2026-11", Source.REDIS)}


def test_the_dashboard_lists_the_issues(client, old_customer):
    ReconciliationIssue.objects.create(customer=old_customer, period="2026-10", source=Source.STRIPE,
                                       expected=Decimal("54.00"), found=Decimal("45.00"))
    client.force_login(UserFactory(is_staff=True))

    html = client.get(reverse("staff-dashboard")).content.decode()

    assert "1 open drift" in html and "Stripe charge vs invoice total" in html and "\u22129" in html  # money prints a real minus sign


def test_a_closed_period_with_usage_or_billed_days_and_no_invoice_is_reported(old_customer, starter_plan):
    used = old_customer
    UsageRecordFactory(customer=used, day=date(2026, 10, 5), calls=100)
    idle = CustomerFactory(plan=starter_plan, created_at=datetime(2026, 1, 1, tzinfo=dt_timezone.utc))
    gone = CustomerFactory(plan=starter_plan, status="cancelled", created_at=datetime(2026, 1, 1, tzinfo=dt_timezone.utc))
    PlanChangeFactory(customer=gone, from_plan=starter_plan, to_plan=starter_plan, reason=PlanChange.Reason.CANCELLED,
                      at=datetime(2026, 9, 10, tzinfo=dt_timezone.utc))
    billed = CustomerFactory(plan=starter_plan, created_at=datetime(2026, 1, 1, tzinfo=dt_timezone.utc))
    with time_machine.travel(NOW, tick=False):
        invoice_generate(customer=billed, period="2026-10")
        CustomerFactory(plan=starter_plan)  # signed up in November: nothing owed for October

        reconciliation_run(period="2026-10")

    assert set(ReconciliationIssue.objects.values_list("customer_id", "source", "expected", "found")) == {
        (used.pk, Source.MISSING_INVOICE, Decimal("1"), Decimal("0")),
        (idle.pk, Source.MISSING_INVOICE, Decimal("1"), Decimal("0")),
    }
    with time_machine.travel(NOW, tick=False):
        for customer in (used, idle):
            invoice_generate(customer=customer, period="2026-10")
        assert reconciliation_run(period="2026-10").drifts == ()
    assert not ReconciliationIssue.objects.exists()


@pytest.fixture
def upgraded_invoice(starter_plan):
    """Starter since September; Professional from 09:00 on 10 October; the October invoice as billing writes it."""
    pro = seeded_plan("pro")
    customer = CustomerFactory(plan=starter_plan, created_at=datetime(2026, 9, 1, tzinfo=dt_timezone.utc))
    PlanChangeFactory(customer=customer, from_plan=starter_plan, to_plan=pro,
                      at=datetime(2026, 10, 10, 9, tzinfo=dt_timezone.utc))
    customer.plan = pro
    customer.save()
    UsageRecordFactory(customer=customer, day=date(2026, 10, 3), calls=30_000)
    UsageRecordFactory(customer=customer, day=date(2026, 10, 20), calls=400_000)
    with time_machine.travel(NOW, tick=False):
        return invoice_generate(customer=customer, period="2026-10")


def test_an_invoice_that_follows_the_rules_is_not_reported(upgraded_invoice):
    # Starter, 1-10 Oct: 50,000 × 10/31 = 16,129 included, 30,000 calls: 13,871 × $0.001 = $13.87.
    # Professional, 11-31 Oct: 500,000 × 21/31 = 338,710 included, 400,000 calls: 61,290 × $0.0005 = $30.65.
    overage = upgraded_invoice.lines.filter(kind=InvoiceLine.Kind.OVERAGE).order_by("starts_on")
    assert [(line.starts_on, line.amount) for line in overage] == [
        (date(2026, 10, 1), Decimal("13.87")), (date(2026, 10, 11), Decimal("30.65"))]
    assert upgraded_invoice.calls == 430_000

    with time_machine.travel(NOW, tick=False):
        assert reconciliation_run(period="2026-10").drifts == ()


def test_an_invoice_whose_calls_were_changed_in_the_database_is_reported(upgraded_invoice):
    Invoice.objects.filter(pk=upgraded_invoice.pk).update(calls=429_000)

    with time_machine.travel(NOW, tick=False):
        drifts = reconciliation_run(period="2026-10").drifts

    assert [(d.source, d.expected, d.found, d.invoice_id) for d in drifts] == [
        (Source.INVOICE_CALLS, Decimal("430000"), Decimal("429000"), upgraded_invoice.pk)]


def test_an_overage_line_changed_or_deleted_in_the_database_is_reported(upgraded_invoice):
    pro_overage = upgraded_invoice.lines.get(kind=InvoiceLine.Kind.OVERAGE, starts_on=date(2026, 10, 11))
    InvoiceLine.objects.filter(pk=pro_overage.pk).update(amount=Decimal("30.64"))
    with time_machine.travel(NOW, tick=False):
        changed = reconciliation_run(period="2026-10").drifts
    InvoiceLine.objects.filter(pk=pro_overage.pk).delete()
    with time_machine.travel(NOW, tick=False):
        deleted = reconciliation_run(period="2026-10").drifts

    assert [(d.source, d.expected, d.found) for d in changed] == [
        (Source.INVOICE_OVERAGE, Decimal("44.52"), Decimal("44.51"))]
    assert [(d.source, d.expected, d.found) for d in deleted] == [
        (Source.INVOICE_OVERAGE, Decimal("44.52"), Decimal("13.87"))]
    assert ReconciliationIssue.objects.get().found == Decimal("13.87")


def test_overage_moved_between_runs_is_reported_though_the_total_agrees(upgraded_invoice):
    # Whole-period arithmetic would see $44.52 either way; each run is checked on its own.
    lines = upgraded_invoice.lines.filter(kind=InvoiceLine.Kind.OVERAGE)
    lines.filter(starts_on=date(2026, 10, 1)).update(amount=Decimal("14.87"))
    lines.filter(starts_on=date(2026, 10, 11)).update(amount=Decimal("29.65"))

    with time_machine.travel(NOW, tick=False):
        drifts = reconciliation_run(period="2026-10").drifts

    assert [(d.source, d.expected, d.found) for d in drifts] == [
        (Source.INVOICE_OVERAGE, Decimal("44.52"), Decimal("44.52"))]
