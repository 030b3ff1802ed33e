"""Invoices computed by hand for November 2026 (30 days) and checked to the cent."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from accounts.models import Customer
from billing.models import Invoice, InvoiceLine
from billing.selectors import credit_balance, invoice_compute, plan_change_preview
from billing.subscriptions import customer_cancel, plan_change
from billing.invoicing import invoice_credit_add, invoice_generate, invoice_issue, invoice_mark_paid, invoice_void
from tests.factories import CustomerFactory

from .conftest import at, usage, utc

pytestmark = pytest.mark.django_db

DECEMBER_1 = utc(2026, 12, 1, 0, 30)


def lines_of(invoice: Invoice) -> list[tuple[str, Decimal]]:
    return [(line.kind, line.amount) for line in invoice.lines.all()]


def test_an_upgrade_mid_month_prorates_each_plan_by_the_days_held_at_their_start(october_customer, plans):
    with at(utc(2026, 11, 16, 10)):
        plan_change(customer=october_customer, plan=plans["pro"])
    usage(october_customer, date(2026, 11, 5), 350_000)
    usage(october_customer, date(2026, 11, 20), 250_000)
    with at(DECEMBER_1):
        invoice = invoice_generate(customer=october_customer, period="2026-11")
    # Starter 1-16 Nov (16 of 30 days: the 16th began on Starter): 49 x 16/30 = 26.13; allowance
    # 50,000 x 16/30 = 26,666.7 -> 26,667; 350,000 calls -> 323,333 over at $0.001 = 323.33.
    # Pro 17-30 Nov (14 days): 199 x 14/30 = 92.87; allowance 500,000 x 14/30 -> 233,333;
    # 250,000 calls -> 16,667 over at $0.0005 = 8.3335 -> 8.33.
    assert lines_of(invoice) == [("base", Decimal("26.13")), ("overage", Decimal("323.33")),
                                 ("base", Decimal("92.87")), ("overage", Decimal("8.33"))]
    assert invoice.total == Decimal("450.66")
    assert invoice.status == Invoice.Status.DRAFT and invoice.calls == 600_000 and invoice.plan == plans["pro"]
    base = invoice.lines.first()
    assert (base.starts_on, base.ends_on, base.quantity) == (date(2026, 11, 1), date(2026, 11, 17), 16)


def test_a_downgrade_rates_the_calls_of_each_run_on_that_runs_terms(plans):
    customer = CustomerFactory(plan=plans["pro"], created_at=utc(2026, 10, 1, 9))
    with at(utc(2026, 11, 20, 23, 59)):
        plan_change(customer=customer, plan=plans["starter"])
    usage(customer, date(2026, 11, 2), 120_000)
    usage(customer, date(2026, 11, 25), 20_000)
    with at(DECEMBER_1):
        invoice = invoice_generate(customer=customer, period="2026-11")
    # Pro 1-20 Nov: 199 x 20/30 = 132.67; 120,000 calls within 333,333. Starter 21-30 Nov:
    # 49 x 10/30 = 16.33; allowance 16,667; 20,000 calls -> 3,333 over at $0.001 = 3.33. The
    # 2 Nov calls are Pro's: under the old end-of-period rule they cost 70.00 of Starter overage.
    assert lines_of(invoice) == [("base", Decimal("132.67")), ("base", Decimal("16.33")), ("overage", Decimal("3.33"))]
    assert invoice.total == Decimal("152.33")


def test_trial_days_cost_nothing_and_their_calls_are_not_billable(plans):
    customer = CustomerFactory(
        plan=plans["starter"], status=Customer.Status.ACTIVE, created_at=utc(2026, 11, 10, 12),
        trial_ends_at=utc(2026, 11, 24, 12),
    )
    for day in range(10, 31):
        usage(customer, date(2026, 11, day), 10_000)
    with at(DECEMBER_1):
        invoice = invoice_generate(customer=customer, period="2026-11")
    # 10-24 Nov began in the trial (15 days, free); 25-30 Nov (6 days) cost 49 x 6/30 = 9.80 and
    # include 50,000 x 6/30 = 10,000 calls: their 60,000 calls are 50,000 beyond, at $0.001.
    assert lines_of(invoice) == [("base", Decimal("0.00")), ("base", Decimal("9.80")), ("overage", Decimal("50.00"))]
    assert invoice.lines.first().description == "Starter trial, 10–24 Nov (free)"
    assert invoice.calls == 60_000 and invoice.total == Decimal("59.80")


def test_a_hard_capped_plan_never_bills_overage_and_its_zero_invoice_is_paid_when_issued(
    plans, django_capture_on_commit_callbacks
):
    customer = CustomerFactory(plan=plans["free"], created_at=utc(2026, 9, 1))
    usage(customer, date(2026, 11, 3), 5_000)
    with at(DECEMBER_1), django_capture_on_commit_callbacks(execute=True):
        invoice = invoice_issue(invoice=invoice_generate(customer=customer, period="2026-11"))
    assert lines_of(invoice) == [("base", Decimal("0.00"))]
    assert invoice.status == Invoice.Status.PAID and invoice.paid_at == DECEMBER_1
    assert invoice.number == "TB-2026-000001" and invoice.calls == 5_000
    assert [m.subject for m in mail.outbox] == ["Tollbooth invoice TB-2026-000001 for 2026-11: $0.00"]


def test_numbers_are_sequential_per_year_and_never_reused(october_customer, plans):
    other = CustomerFactory(plan=plans["pro"], created_at=utc(2026, 10, 1))
    with at(DECEMBER_1):
        first = invoice_issue(invoice=invoice_generate(customer=october_customer, period="2026-11"))
        invoice_void(invoice=first)
        second = invoice_issue(invoice=invoice_generate(customer=other, period="2026-11"))
    with at(utc(2027, 1, 1, 0, 30)):
        third = invoice_issue(invoice=invoice_generate(customer=other, period="2026-12"))
    assert [first.number, second.number, third.number] == ["TB-2026-000001", "TB-2026-000002", "TB-2027-000001"]


def test_generating_twice_returns_the_same_invoice_and_writes_nothing(october_customer):
    usage(october_customer, date(2026, 11, 5), 60_000)
    with at(DECEMBER_1):
        invoice = invoice_generate(customer=october_customer, period="2026-11")
        line_ids = list(invoice.lines.values_list("pk", flat=True))
        again = invoice_generate(customer=october_customer, period="2026-11")
    assert again.pk == invoice.pk and list(again.lines.values_list("pk", flat=True)) == line_ids
    assert again.total == Decimal("59.00")


def test_an_issued_invoice_never_changes_even_when_late_usage_arrives(october_customer):
    usage(october_customer, date(2026, 11, 5), 60_000)
    with at(DECEMBER_1):
        issued = invoice_issue(invoice=invoice_generate(customer=october_customer, period="2026-11"))
        usage(october_customer, date(2026, 11, 6), 5_000)
        again = invoice_generate(customer=october_customer, period="2026-11")
    assert (again.pk, again.total, again.status, again.number) == (issued.pk, Decimal("59.00"), "open", issued.number)
    assert invoice_issue(invoice=again).number == issued.number


def test_a_draft_follows_usage_flushed_after_it_was_first_generated(october_customer):
    with at(DECEMBER_1):
        draft = invoice_generate(customer=october_customer, period="2026-11")
        usage(october_customer, date(2026, 11, 30), 51_000)
        again = invoice_generate(customer=october_customer, period="2026-11")
    assert (draft.total, again.total) == (Decimal("49.00"), Decimal("50.00"))


def test_cancelling_issues_the_final_invoice_for_the_partial_period_and_a_second_cancel_does_nothing(october_customer):
    usage(october_customer, date(2026, 11, 9), 1_000)
    with at(utc(2026, 11, 10, 15)):
        final = customer_cancel(customer=october_customer)
        again = customer_cancel(customer=october_customer)
    october_customer.refresh_from_db()
    assert october_customer.status == Customer.Status.CANCELLED and again is None
    # 1-10 Nov: the 10th began before the cancellation. 49 x 10/30 = 16.333..
    assert lines_of(final) == [("base", Decimal("16.33"))]
    assert (final.status, final.is_final, final.period, final.number) == ("open", True, "2026-11", "TB-2026-000001")
    with at(utc(2027, 1, 1, 1)):
        with pytest.raises(ValidationError, match="no billable days in 2026-12"):
            invoice_generate(customer=october_customer, period="2026-12")
    assert Invoice.objects.filter(customer=october_customer).count() == 1


def test_the_period_must_be_a_month_that_has_started(october_customer):
    with pytest.raises(ValidationError, match="Expected a month as YYYY-MM"):
        invoice_generate(customer=october_customer, period="2026-13")
    with at(utc(2026, 11, 27)), pytest.raises(ValidationError, match="2027-01 has not started yet"):
        invoice_generate(customer=october_customer, period="2027-01")


def test_days_before_the_customer_existed_are_not_billed(plans):
    customer = CustomerFactory(plan=plans["pro"], created_at=utc(2026, 11, 21, 18))
    with at(DECEMBER_1):
        invoice = invoice_generate(customer=customer, period="2026-11")
    assert lines_of(invoice) == [("base", Decimal("66.33"))]  # 21-30 Nov: 199 x 10/30


def test_credit_beyond_an_invoice_carries_forward_to_the_next_one(october_customer):
    with at(utc(2026, 11, 3)):
        invoice_credit_add(customer=october_customer, amount=Decimal("10.00"), description="Outage on 2 Nov")
        invoice_credit_add(customer=october_customer, amount=Decimal("50.00"), description="Goodwill")
    assert credit_balance(customer_id=october_customer.pk) == Decimal("60.00")
    with at(DECEMBER_1):
        november = invoice_issue(invoice=invoice_generate(customer=october_customer, period="2026-11"))
    assert lines_of(november) == [("base", Decimal("49.00")), ("credit", Decimal("-49.00"))]
    assert (november.subtotal, november.total, november.status, november.paid_by) == (
        Decimal("49.00"), Decimal("0.00"), "paid", "credit balance")
    assert credit_balance(customer_id=october_customer.pk) == Decimal("11.00")  # 60 - 49, not lost
    with at(utc(2027, 1, 1, 0, 30)):
        december = invoice_issue(invoice=invoice_generate(customer=october_customer, period="2026-12"))
    # December: 49.00 less the 11.00 left.
    assert (december.total, credit_balance(customer_id=october_customer.pk)) == (Decimal("38.00"), Decimal("0.00"))
    with at(utc(2026, 12, 2)), pytest.raises(ValidationError, match="positive amount in cents"):
        invoice_credit_add(customer=october_customer, amount=Decimal("1.005"), description="x")


def test_paying_an_invoice_ends_past_due_at_once_and_a_paid_invoice_cannot_be_voided(october_customer):
    with at(DECEMBER_1):
        invoice = invoice_issue(invoice=invoice_generate(customer=october_customer, period="2026-11"))
    Customer.objects.filter(pk=october_customer.pk).update(status="past_due", past_due_since=DECEMBER_1)
    paid = invoice_mark_paid(invoice=invoice)
    october_customer.refresh_from_db()
    assert paid.status == "paid" and october_customer.status == "active" and october_customer.past_due_since is None
    with pytest.raises(ValidationError, match="paid invoice cannot be voided"):
        invoice_void(invoice=paid)


def test_the_portal_projection_and_the_invoice_use_the_same_computation(october_customer):
    usage(october_customer, date(2026, 11, 5), 1_000)
    with at(utc(2026, 11, 15)):
        projected = invoice_compute(customer=october_customer, period="2026-11", extra_calls={date(2026, 11, 20): 79_000})
        so_far = invoice_compute(customer=october_customer, period="2026-11")
    assert (projected.total, projected.calls) == (Decimal("79.00"), 80_000)
    assert (so_far.total, so_far.calls) == (Decimal("49.00"), 1_000)


def test_a_plan_change_preview_states_the_prorated_difference(october_customer, plans):
    with at(utc(2026, 11, 21, 8)):
        preview = plan_change_preview(customer=october_customer, plan=plans["pro"])
    # From the 22nd on (9 days) at Pro instead of Starter: (199 - 49) x 9/30, per line rounding.
    assert (preview.base_before, preview.base_after, preview.difference) == (
        Decimal("49.00"), Decimal("34.30") + Decimal("59.70"), Decimal("45.00"))
    assert preview.days_left == 10
    assert InvoiceLine.objects.count() == 0


def test_final_invoice_month_close_skips_a_customer_cancelled_in_an_earlier_month(october_customer):
    from billing.tasks import invoices_generate_all

    with at(utc(2026, 10, 20)):
        customer_cancel(customer=october_customer)
    with at(DECEMBER_1):
        report = invoices_generate_all(period="2026-11")
    assert report == {"created": 0, "regenerated": 0, "skipped": 1}
    assert not Invoice.objects.filter(period="2026-11").exists()


def test_issued_invoices_are_emailed_once(october_customer, django_capture_on_commit_callbacks):
    with at(DECEMBER_1), django_capture_on_commit_callbacks(execute=True):
        invoice = invoice_issue(invoice=invoice_generate(customer=october_customer, period="2026-11"))
        invoice_issue(invoice=invoice)
    issued = [m for m in mail.outbox if m.subject.startswith("Tollbooth invoice")]
    assert [m.subject for m in issued] == ["Tollbooth invoice TB-2026-000001 for 2026-11: $49.00"]
    assert "Starter, 1–30 Nov (30 of 30 days): $49.00" in issued[0].body


def test_prorated_days_and_the_period_end_plan_when_the_change_is_at_midnight(october_customer, plans):
    with at(utc(2026, 11, 30, 0, 0)):
        plan_change(customer=october_customer, plan=plans["pro"])
    with at(DECEMBER_1):
        draft = invoice_compute(customer=october_customer, period="2026-11")
    # The 30th began on Pro: 29 days of Starter, 1 of Pro.
    assert [line.amount for line in draft.lines] == [Decimal("47.37"), Decimal("6.63")]
    assert draft.end_plan_id == plans["pro"].pk and draft.billed_days == 30
    assert draft.lines[1].starts_on == date(2026, 11, 30) and draft.lines[1].ends_on - timedelta(days=1) == date(2026, 11, 30)
