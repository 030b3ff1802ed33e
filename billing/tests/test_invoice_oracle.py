"""Invoices checked two ways: against figures worked out by hand from README "Billing", and against an
independent recomputation (tests/billing_oracle.py) that shares no code with billing's rating.

Each scenario runs twice: side "oracle" checks the recomputation against the hand figures, side
"invoice" makes the real invoice through the service contract (plan_change, customer_cancel,
invoice_generate) and checks it against both. November 2026 has 30 days; Starter is $49,
50,000 calls, $0.001 a call; Professional $199, 500,000, $0.0005; Enterprise $999, 5,000,000,
$0.0002; Free $0, 1,000 calls, hard cap.
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import HealthCheck, given, settings, strategies as st

from accounts.models import Customer
from billing.invoicing import invoice_generate
from billing.models import Invoice, PaymentMethod
from billing.subscriptions import customer_cancel, plan_change, trial_end
from plans.models import Plan
from tests.billing_oracle import (
    Day, Line, cents_half_up, calls_half_up, expected_invoice, run_lines, runs_of, stored_charges, stored_credits,
)
from tests.factories import CustomerFactory

from .conftest import at, usage, utc

pytestmark = pytest.mark.django_db

NOVEMBER = "2026-11"
CLOSE = utc(2026, 12, 1, 0, 30)  # the month close runs at 00:30 on the 1st
SIDES = pytest.mark.parametrize("side", ["oracle", "invoice"])


def nov(day: int) -> date:
    """A day of November 2026; nov(31) is 1 December, the exclusive end of a run to the month's end."""
    return date(2026, 11, 1) + timedelta(days=day - 1)


def base(first: int, after: int, days: int, amount: str) -> Line:
    return Line("base", nov(first), nov(after), Decimal(days), Decimal(amount))


def overage(first: int, after: int, calls: int, amount: str) -> Line:
    return Line("overage", nov(first), nov(after), Decimal(calls), Decimal(amount))


def customer_on(plan, created=utc(2026, 10, 1, 9), **fields) -> Customer:
    with at(created):
        return CustomerFactory(plan=plan, created_at=created, **fields)


def change(customer: Customer, plan, moment) -> None:
    with at(moment):
        plan_change(customer=customer, plan=plan)


def generate(customer: Customer, period: str = NOVEMBER, moment=CLOSE) -> Invoice:
    with at(moment):
        return invoice_generate(customer=customer, period=period)


def check(side: str, customer: Customer, lines: list[Line], total: str, *, period: str = NOVEMBER,
          invoice: Invoice | None = None) -> None:
    expected = expected_invoice(customer, period)
    if side == "oracle":
        assert expected.charged == lines
        assert expected.total() == Decimal(total)
        return
    invoice = Invoice.objects.get(pk=(invoice or generate(customer, period)).pk)
    assert stored_charges(invoice) == lines, invoice.lines.values_list("kind", "description", "amount")
    assert invoice.total == Decimal(total)
    assert stored_charges(invoice) == expected.charged and invoice.total == expected.total(stored_credits(invoice))


# ---------------------------------------------------------------- the oracle's own arithmetic

def test_the_issue_example_run_starter_1_to_29_november_with_450000_calls():
    # base 49 × 29/30 = 47.3666… → 47.37; allowance 50,000 × 29/30 = 48,333.33 → 48,333;
    # overage (450,000 − 48,333) = 401,667 × 0.001 = 401.667 → 401.67
    lines = run_lines(price=Decimal("49"), included=50_000, overage_price=Decimal("0.001"), hard_cap=False,
                      starts_on=nov(1), days=29, days_in_month=30, calls=450_000)
    assert lines == [base(1, 30, 29, "47.37"), overage(1, 30, 401_667, "401.67")]


def test_rounding_is_half_up_for_cents_and_for_the_allowance():
    assert cents_half_up(Decimal("0.125")) == Decimal("0.13")  # half-even would give 0.12
    assert cents_half_up(Decimal("33.325")) == Decimal("33.33")  # half-even: 33.32
    assert calls_half_up(Decimal("2.5")) == 3  # half-even: 2
    # price 3.75 × 1/30 = 0.125 → 0.13; allowance 75 × 1/30 = 2.5 → 3; 4 calls: 1 beyond × 0.5
    lines = run_lines(price=Decimal("3.75"), included=75, overage_price=Decimal("0.5"), hard_cap=False,
                      starts_on=nov(1), days=1, days_in_month=30, calls=4)
    assert lines == [base(1, 2, 1, "0.13"), overage(1, 2, 1, "0.50")]


def test_a_hard_capped_run_bills_its_base_and_never_overage():
    lines = run_lines(price=Decimal("0"), included=1_000, overage_price=Decimal("0.01"), hard_cap=True,
                      starts_on=nov(11), days=20, days_in_month=30, calls=90_000)
    assert lines == [base(11, 31, 20, "0.00")]


def test_calls_within_the_allowance_bill_no_overage_line():
    # Enterprise all month: allowance 5,000,000 covers 4,900,000
    lines = run_lines(price=Decimal("999"), included=5_000_000, overage_price=Decimal("0.0002"), hard_cap=False,
                      starts_on=nov(1), days=30, days_in_month=30, calls=4_900_000)
    assert lines == [base(1, 31, 30, "999.00")]


def test_runs_break_on_other_terms_and_on_a_gap():
    days = [Day(nov(1), "A", 1), Day(nov(2), "A", 2), Day(nov(3), "B", 3), Day(nov(4), "A", 4), Day(nov(6), "A", 6)]
    assert [[d.on.day for d in run] for run in runs_of(list(reversed(days)))] == [[1, 2], [3], [4], [6]]


# ---------------------------------------------------------------- the issue's table

@SIDES
def test_starter_with_2000010_calls_moving_to_free_at_2350_on_the_30th_keeps_its_overage(side, plans):
    customer = customer_on(plans["starter"])
    usage(customer, nov(12), 2_000_000)
    usage(customer, nov(30), 10)
    change(customer, plans["free"], utc(2026, 11, 30, 23, 50))
    # Nov 30 started on Starter, so all 30 days are one Starter run: base 49.00, allowance
    # 50,000, overage (2,000,010 − 50,000) × 0.001 = 1,950.01; total 1,999.01
    check(side, customer, [base(1, 31, 30, "49.00"), overage(1, 31, 1_950_010, "1950.01")], "1999.01")


@SIDES
def test_starter_with_2000010_calls_moving_to_enterprise_at_2350_on_the_30th_keeps_its_overage(side, plans):
    customer = customer_on(plans["starter"])
    usage(customer, nov(12), 2_000_000)
    usage(customer, nov(30), 10)
    change(customer, plans["enterprise"], utc(2026, 11, 30, 23, 50))
    # as above: Enterprise holds no day of November yet (Dec 1 is its first day)
    check(side, customer, [base(1, 31, 30, "49.00"), overage(1, 31, 1_950_010, "1950.01")], "1999.01")


@SIDES
def test_enterprise_with_4900000_calls_moving_to_starter_at_2350_on_the_30th_pays_999(side, plans):
    customer = customer_on(plans["enterprise"])
    usage(customer, nov(2), 4_000_000)
    usage(customer, nov(30), 900_000)
    change(customer, plans["starter"], utc(2026, 11, 30, 23, 50))
    # one Enterprise run of 30 days: base 999.00; allowance 5,000,000 ≥ 4,900,000: no overage
    check(side, customer, [base(1, 31, 30, "999.00")], "999.00")


@SIDES
def test_professional_with_499980_calls_moving_to_starter_at_month_end_pays_199(side, plans):
    customer = customer_on(plans["pro"])
    usage(customer, nov(20), 499_980)
    change(customer, plans["starter"], utc(2026, 11, 30, 23, 59))
    # one Professional run: base 199.00; allowance 500,000 ≥ 499,980 (the $199 cap is not needed)
    check(side, customer, [base(1, 31, 30, "199.00")], "199.00")


@SIDES
def test_starter_with_450000_calls_moving_to_free_at_0010_on_december_1_pays_449_for_november(side, plans):
    customer = customer_on(plans["starter"])
    usage(customer, nov(15), 450_000)
    change(customer, plans["free"], utc(2026, 12, 1, 0, 10))  # before the 00:30 close
    # November never saw Free: base 49.00; overage (450,000 − 50,000) × 0.001 = 400.00; total 449.00
    check(side, customer, [base(1, 31, 30, "49.00"), overage(1, 31, 400_000, "400.00")], "449.00")


# ---------------------------------------------------------------- per-run rating by hand

@SIDES
def test_an_upgrade_mid_month_rates_each_run_on_its_own_terms(side, plans):
    customer = customer_on(plans["starter"])
    usage(customer, nov(3), 10_000)
    usage(customer, nov(10), 20_000)  # the change day started on Starter: its calls are Starter's
    usage(customer, nov(20), 399_983)
    change(customer, plans["pro"], utc(2026, 11, 10, 14))
    # Starter 1–10 Nov: base 49 × 10/30 = 16.333 → 16.33; allowance 16,666.67 → 16,667;
    #   30,000 − 16,667 = 13,333 × 0.001 = 13.333 → 13.33
    # Pro 11–30 Nov: base 199 × 20/30 = 132.667 → 132.67; allowance 333,333.33 → 333,333;
    #   399,983 − 333,333 = 66,650 × 0.0005 = 33.325 → 33.33 (half-up)
    # total 16.33 + 13.33 + 132.67 + 33.33 = 195.66
    check(side, customer, [
        base(1, 11, 10, "16.33"), overage(1, 11, 13_333, "13.33"),
        base(11, 31, 20, "132.67"), overage(11, 31, 66_650, "33.33"),
    ], "195.66")


@SIDES
def test_a_downgrade_mid_month_does_not_let_the_old_allowance_cover_the_new_runs_calls(side, plans):
    customer = customer_on(plans["pro"])
    usage(customer, nov(5), 200_000)
    usage(customer, nov(20), 100_000)
    change(customer, plans["starter"], utc(2026, 11, 16, 9))
    # Pro 1–16 Nov: base 199 × 16/30 = 106.133 → 106.13; allowance 266,667 ≥ 200,000
    # Starter 17–30 Nov: base 49 × 14/30 = 22.867 → 22.87; allowance 23,333.33 → 23,333;
    #   100,000 − 23,333 = 76,667 × 0.001 = 76.667 → 76.67
    # total 106.13 + 22.87 + 76.67 = 205.67
    check(side, customer, [
        base(1, 17, 16, "106.13"), base(17, 31, 14, "22.87"), overage(17, 31, 76_667, "76.67"),
    ], "205.67")


@SIDES
def test_a_change_at_midnight_exactly_moves_the_day_that_starts_then(side, plans):
    customer = customer_on(plans["starter"])
    change(customer, plans["pro"], utc(2026, 11, 16))
    # at 00:00:00 on Nov 16 Pro is already held: Starter 1–15 = 49 × 15/30 = 24.50,
    # Pro 16–30 = 199 × 15/30 = 99.50; total 124.00
    check(side, customer, [base(1, 16, 15, "24.50"), base(16, 31, 15, "99.50")], "124.00")


@SIDES
def test_a_switch_at_2359_and_back_at_0001_bills_one_day_of_the_other_plan(side, plans):
    customer = customer_on(plans["starter"])
    usage(customer, nov(10), 10_000)
    usage(customer, nov(15), 20_000)
    usage(customer, nov(25), 30_000)
    change(customer, plans["pro"], utc(2026, 11, 14, 23, 59))
    change(customer, plans["starter"], utc(2026, 11, 15, 0, 1))
    # Nov 15 started on Pro (23:59 the day before), Nov 16 on Starter again: three runs.
    # Starter 1–14: base 49 × 14/30 = 22.867 → 22.87; allowance 23,333 ≥ 10,000
    # Pro 15: base 199/30 = 6.633 → 6.63; allowance 16,666.67 → 16,667; 20,000 − 16,667 = 3,333
    #   × 0.0005 = 1.6665 → 1.67
    # Starter 16–30: base 49 × 15/30 = 24.50; allowance 25,000; 5,000 × 0.001 = 5.00
    # total 22.87 + 6.63 + 1.67 + 24.50 + 5.00 = 60.67
    check(side, customer, [
        base(1, 15, 14, "22.87"), base(15, 16, 1, "6.63"), overage(15, 16, 3_333, "1.67"),
        base(16, 31, 15, "24.50"), overage(16, 31, 5_000, "5.00"),
    ], "60.67")


@SIDES
def test_trial_days_cost_nothing_and_their_calls_are_free_then_the_paid_days_bill(side, plans):
    signup = utc(2026, 11, 5, 10)
    customer = customer_on(plans["starter"], signup, status=Customer.Status.TRIAL,
                           trial_ends_at=signup + timedelta(days=14))
    PaymentMethod.objects.create(customer=customer, stripe_payment_method_id="pm_card_visa", brand="visa", last4="4242")
    usage(customer, nov(5), 60_000)
    usage(customer, nov(19), 40_000)  # Nov 19 started (00:00) before the trial's end at 10:00: trial
    usage(customer, nov(25), 20_000)
    with at(utc(2026, 11, 19, 10)):
        assert trial_end(customer=customer).status == Customer.Status.ACTIVE
    # trial 5–19 Nov (15 days) free, its 100,000 calls count toward nothing;
    # Starter 20–30 Nov: base 49 × 11/30 = 17.967 → 17.97; allowance 18,333.33 → 18,333;
    #   20,000 − 18,333 = 1,667 × 0.001 = 1.667 → 1.67; total 19.64
    check(side, customer, [base(20, 31, 11, "17.97"), overage(20, 31, 1_667, "1.67")], "19.64")


@SIDES
def test_a_trial_that_ends_without_a_card_moves_to_free_and_bills_nothing(side, plans):
    signup = utc(2026, 11, 5, 10)
    customer = customer_on(plans["starter"], signup, status=Customer.Status.TRIAL,
                           trial_ends_at=signup + timedelta(days=14))
    usage(customer, nov(10), 60_000)
    usage(customer, nov(25), 900)
    with at(utc(2026, 11, 19, 10)):
        assert trial_end(customer=customer).plan == plans["free"]
    # trial 5–19 free; Free 20–30: base 0, hard cap, no overage: nothing to charge
    check(side, customer, [], "0.00")


@SIDES
def test_a_signup_mid_month_bills_from_its_signup_day(side, plans):
    customer = customer_on(plans["starter"], utc(2026, 11, 10, 15))
    usage(customer, nov(10), 15_000)
    usage(customer, nov(28), 25_000)
    # 10–30 Nov = 21 days: base 49 × 21/30 = 34.30; allowance 35,000; 5,000 × 0.001 = 5.00; total 39.30
    check(side, customer, [base(10, 31, 21, "34.30"), overage(10, 31, 5_000, "5.00")], "39.30")


@SIDES
def test_a_cancellation_mid_month_issues_a_final_invoice_up_to_its_day(side, plans):
    customer = customer_on(plans["starter"])
    usage(customer, nov(5), 30_000)
    usage(customer, nov(20), 10_000)
    with at(utc(2026, 11, 20, 12)):
        final = customer_cancel(customer=customer)
    assert final.is_final and final.period == NOVEMBER and final.status == Invoice.Status.OPEN
    # Nov 20 started before the cancellation: 1–20 Nov = 20 days; base 49 × 20/30 = 32.667 → 32.67;
    # allowance 33,333.33 → 33,333; 40,000 − 33,333 = 6,667 × 0.001 = 6.667 → 6.67; total 39.34
    check(side, customer, [base(1, 21, 20, "32.67"), overage(1, 21, 6_667, "6.67")], "39.34", invoice=final)


# ---------------------------------------------------------------- terms are snapshots

def _starter_raise(plan: Plan) -> None:
    plan.price, plan.included_calls = Decimal("59.00"), 60_000
    plan.save()


def test_a_price_edit_mid_period_moves_neither_last_months_nor_this_months_invoice(plans):
    customer = customer_on(plans["starter"])
    usage(customer, date(2026, 10, 20), 60_000)
    usage(customer, nov(3), 55_000)
    october = generate(customer, "2026-10", utc(2026, 11, 1, 0, 30))
    # October, 31 days on Starter: base 49.00; (60,000 − 50,000) × 0.001 = 10.00; total 59.00
    oct_lines = [Line("base", date(2026, 10, 1), nov(1), Decimal(31), Decimal("49.00")),
                 Line("overage", date(2026, 10, 1), nov(1), Decimal(10_000), Decimal("10.00"))]
    assert stored_charges(october) == oct_lines and october.total == Decimal("59.00")
    draft_before = _lines(generate(customer, NOVEMBER, utc(2026, 11, 15, 11)))

    with at(utc(2026, 11, 15, 12)):
        _starter_raise(plans["starter"])

    assert _lines(generate(customer, NOVEMBER, utc(2026, 11, 15, 13))) == draft_before
    assert stored_charges(generate(customer, "2026-10", utc(2026, 11, 15, 13))) == oct_lines
    # November on the terms taken at signup: base 49.00; (55,000 − 50,000) × 0.001 = 5.00
    november = generate(customer)
    assert stored_charges(november) == [base(1, 31, 30, "49.00"), overage(1, 31, 5_000, "5.00")]
    assert november.total == Decimal("54.00") == expected_invoice(customer, NOVEMBER).total()


@SIDES
def test_a_signup_after_a_price_edit_takes_the_new_terms(side, plans):
    with at(utc(2026, 11, 15, 12)):
        _starter_raise(plans["starter"])
    customer = customer_on(plans["starter"], utc(2026, 11, 20, 10))
    usage(customer, nov(22), 23_000)
    # 20–30 Nov = 11 days at $59 / 60,000: base 59 × 11/30 = 21.633 → 21.63; allowance 22,000;
    # 1,000 × 0.001 = 1.00; total 22.63
    check(side, customer, [base(20, 31, 11, "21.63"), overage(20, 31, 1_000, "1.00")], "22.63")


@SIDES
def test_a_plan_change_after_a_price_edit_takes_the_new_terms_and_the_old_days_keep_theirs(side, plans):
    customer = customer_on(plans["pro"])
    with at(utc(2026, 11, 15, 12)):
        _starter_raise(plans["starter"])
    change(customer, plans["starter"], utc(2026, 11, 25, 12))
    usage(customer, nov(28), 15_000)
    # Pro 1–25 Nov: base 199 × 25/30 = 165.833 → 165.83
    # Starter (new terms) 26–30: base 59 × 5/30 = 9.833 → 9.83; allowance 10,000;
    #   5,000 × 0.001 = 5.00; total 180.66
    check(side, customer, [base(1, 26, 25, "165.83"), base(26, 31, 5, "9.83"), overage(26, 31, 5_000, "5.00")],
          "180.66")


def _lines(invoice: Invoice) -> list[tuple]:
    invoice = Invoice.objects.get(pk=invoice.pk)
    rows = invoice.lines.values_list("kind", "description", "quantity", "unit_price", "amount", "starts_on", "ends_on")
    return [invoice.total, invoice.subtotal, invoice.calls, *rows]


# ---------------------------------------------------------------- a period depends only on its past

SLUGS = ["free", "starter", "pro", "enterprise"]
NOV_START, DEC_START = utc(2026, 11, 1), utc(2026, 12, 1)


def _moments(first, days: int):
    """Moments from `first` over `days` days, often on or next to a midnight (where the rule turns)."""
    minute = st.one_of(st.sampled_from([0, 1, 10, 23 * 60 + 50, 23 * 60 + 59]), st.integers(0, 24 * 60 - 1))
    return st.builds(lambda day, m: first + timedelta(days=day, minutes=m), st.integers(0, days - 1), minute)


def _action(kind: str):
    if kind == "change":
        return st.tuples(st.just("change"), st.sampled_from(SLUGS))
    if kind == "edit":
        return st.tuples(st.just("edit"), st.sampled_from(SLUGS), st.sampled_from(["0", "29", "59", "1500"]),
                         st.sampled_from([1_000, 20_000, 60_000, 2_000_000]))
    return st.just(("cancel",))


# Weighted towards plan changes inside November, so most examples bill runs worth comparing.
actions = st.sampled_from(["change"] * 6 + ["edit"] * 2 + ["cancel"]).flatmap(_action)
histories = st.fixed_dictionaries({
    "created": _moments(utc(2026, 9, 20), 71),
    "first": st.sampled_from(["free", "starter", "starter", "pro", "enterprise"]),
    "trial_days": st.sampled_from([None, None, None, 1, 7, 14, 30]),
    "card": st.booleans(),  # with a card, Free to a paid plan moves at once (else a trial or a refusal)
    "before": st.lists(st.tuples(_moments(utc(2026, 10, 20), 42), actions), max_size=5),
    "after": st.lists(st.tuples(_moments(DEC_START, 31), actions), min_size=1, max_size=4),
    "usage": st.dictionaries(st.integers(1, 30), st.one_of(
        st.sampled_from([0, 900, 20_000, 60_000, 400_000, 2_000_000]), st.integers(0, 3_000_000)), max_size=10),
})


def _act(customer_id: int, moment, action: tuple) -> None:
    with at(moment):
        customer = Customer.objects.get(pk=customer_id)
        if action[0] == "change":
            try:
                plan_change(customer=customer, plan=Plan.objects.get(slug=action[1]))
            except ValidationError:
                pass  # the same plan, or a cancelled account: refused, nothing recorded
        elif action[0] == "cancel":
            customer_cancel(customer=customer)
        elif action[0] == "trial_end":
            trial_end(customer=customer)
        else:
            plan = Plan.objects.get(slug=action[1])
            plan.price, plan.included_calls = Decimal(action[2]), action[3]
            plan.save()


def _fresh_november(customer: Customer, moment) -> list | None:
    """Regenerate November from nothing (an issued final invoice included); None if nothing to bill."""
    customer = Customer.objects.get(pk=customer.pk)  # as the month close reads it, not a stale copy
    with at(moment):
        Invoice.objects.filter(customer=customer, period=NOVEMBER).delete()
        try:
            invoice = invoice_generate(customer=customer, period=NOVEMBER)
        except ValidationError as error:
            assert "no billable days" in str(error)
            return None
    expected = expected_invoice(customer, NOVEMBER)
    assert stored_charges(invoice) == expected.charged, (stored_charges(invoice), expected.charged)
    assert invoice.total == expected.total()
    return _lines(invoice)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=histories)
def test_nothing_done_after_a_period_moves_its_invoice_and_it_always_equals_the_recomputation(plans, case):
    with transaction.atomic():  # each example undoes its plan edits
        created, first = case["created"], plans[case["first"]]
        trial_ends_at = created + timedelta(days=case["trial_days"]) if case["trial_days"] and first.is_paid else None
        customer = customer_on(first, created, trial_ends_at=trial_ends_at,
                               status=Customer.Status.TRIAL if trial_ends_at else Customer.Status.ACTIVE)
        if case["card"]:
            PaymentMethod.objects.create(customer=customer, stripe_payment_method_id="pm_card_visa", last4="4242")
        for day, calls in case["usage"].items():
            if nov(day) >= created.date():
                usage(customer, nov(day), calls)
        events = [(max(moment, created), action) for moment, action in case["before"] if moment < DEC_START]
        if trial_ends_at:
            events.append((trial_ends_at, ("trial_end",)))
        for moment, action in sorted(events, key=lambda event: event[0]):
            if moment < DEC_START:
                _act(customer.pk, moment, action)
        final = Invoice.objects.filter(customer=customer, period=NOVEMBER).first()
        if final is not None:  # a cancellation in November issued it
            assert stored_charges(final) == expected_invoice(customer, NOVEMBER).charged

        at_close = _fresh_november(customer, DEC_START)
        if expected_invoice(customer, NOVEMBER).billed_days:
            assert at_close is not None, "billed days in November, yet no invoice"
        later = sorted([(m, a) for m, a in case["after"]] + [(m, a) for m, a in events if m >= DEC_START],
                       key=lambda event: event[0])
        for moment, action in later:
            _act(customer.pk, moment, action)
        assert _fresh_november(customer, utc(2027, 1, 2)) == at_close
        transaction.set_rollback(True)
