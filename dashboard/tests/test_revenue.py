"""Every number on the staff dashboard against figures worked out by hand.

Prices come from the terms each customer took (signup, then each plan change), never the live
plan: a staff price edit moves no existing customer's MRR, past or present.

The book (15 November 2026, 12:00 UTC; plans: Free $0, Starter $49, Pro $199, Enterprise $999):
  A  Starter since 10 Mar; Pro on 5 Jun (+150 expansion); back to Starter on 20 Aug (-150).
  B  Pro since 1 Apr; cancelled 10 Jul (-199 churn); reactivated on Starter 3 Sep (+49).
  C  Starter trial 1-15 Oct, kept paying (+49 new on 15 Oct).
  D  Starter trial 2-16 Oct, ended without a card onto Free (no movement, not converted).
  E  Pro trial since 10 Nov, still running (pipeline $199).
  F  Enterprise since 15 Jan, past due now (+999 new, still counted).
  G  Free since 1 May (never paying).
  H  Starter since 1 Jun 2025; Pro on 10 Feb (+150).
MRR now = A 49 + B 49 + C 49 + F 999 + H 199 = $1,345 from 5 paying customers.
"""
from __future__ import annotations

import gc
from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from accounts.models import Customer
from billing.models import InvoiceLine, PaymentAttempt, PlanChange
from dashboard.overview import collector_paused, dashboard_overview
from plans.models import Plan
from tests.factories import (
    CustomerFactory, InvoiceFactory, InvoiceLineFactory, PlanChangeFactory, UsageRecordFactory, UserFactory,
    seeded_plan,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=dt_timezone.utc)


def at(month: int, day: int, hour: int = 9, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=dt_timezone.utc)


@pytest.fixture
def plans(db):
    return {slug: seeded_plan(slug) for slug in ("free", "starter", "pro", "enterprise")}


def now_on(customer: Customer, plan: Plan) -> None:
    """The plan its recorded changes led to (the factories write the change, not the customer);
    the customer takes that plan's terms, its signup terms stay."""
    customer.plan = plan
    customer.save()


@pytest.fixture
def book(plans):
    p = plans
    c = {}
    c["A"] = CustomerFactory(company="A", plan=p["starter"], created_at=at(3, 10))
    PlanChangeFactory(customer=c["A"], from_plan=p["starter"], to_plan=p["pro"], at=at(6, 5))
    PlanChangeFactory(customer=c["A"], from_plan=p["pro"], to_plan=p["starter"], at=at(8, 20))
    c["B"] = CustomerFactory(company="B", plan=p["pro"], created_at=at(4, 1))
    PlanChangeFactory(customer=c["B"], from_plan=p["pro"], to_plan=p["pro"], at=at(7, 10), reason=PlanChange.Reason.CANCELLED)
    PlanChangeFactory(customer=c["B"], from_plan=p["pro"], to_plan=p["starter"], at=at(9, 3), reason=PlanChange.Reason.REACTIVATED)
    now_on(c["B"], p["starter"])
    c["C"] = CustomerFactory(company="C", plan=p["starter"], created_at=at(10, 1), trial_ends_at=at(10, 15))
    c["D"] = CustomerFactory(company="D", plan=p["starter"], created_at=at(10, 2), trial_ends_at=at(10, 16))
    PlanChangeFactory(customer=c["D"], from_plan=p["starter"], to_plan=p["free"], at=at(10, 16, 10),
                      reason=PlanChange.Reason.TRIAL_ENDED)
    now_on(c["D"], p["free"])
    c["E"] = CustomerFactory(company="E", plan=p["pro"], status=Customer.Status.TRIAL, created_at=at(11, 10),
                             trial_ends_at=at(11, 24))
    c["F"] = CustomerFactory(company="F", plan=p["enterprise"], status=Customer.Status.PAST_DUE, created_at=at(1, 15))
    c["G"] = CustomerFactory(company="G", plan=p["free"], created_at=at(5, 1))
    c["H"] = CustomerFactory(company="H", plan=p["starter"], created_at=at(6, 1, year=2025))
    PlanChangeFactory(customer=c["H"], from_plan=p["starter"], to_plan=p["pro"], at=at(2, 10))
    now_on(c["H"], p["pro"])
    return c


@pytest.fixture
def usage(book):
    UsageRecordFactory(customer=book["A"], day=date(2026, 10, 20), calls=30_000)
    UsageRecordFactory(customer=book["A"], day=date(2026, 11, 1), calls=40_000)
    UsageRecordFactory(customer=book["A"], day=date(2026, 11, 15), product="text", calls=20_000)
    UsageRecordFactory(customer=book["F"], day=date(2026, 11, 14), calls=1_000_000)
    UsageRecordFactory(customer=book["G"], day=date(2026, 11, 15), product="text", calls=5_000)
    UsageRecordFactory(customer=book["G"], day=date(2026, 10, 1), calls=7)  # 45 days ago: outside the chart


@pytest.fixture
def invoices(book):
    paid = InvoiceFactory(customer=book["A"], period="2026-10", status="paid", total=Decimal("49.00"))
    InvoiceLineFactory(invoice=paid, amount=Decimal("49.00"))
    due = InvoiceFactory(customer=book["F"], period="2026-10", status="open", total=Decimal("999.00"), issued_at=at(11, 1))
    PaymentAttempt.objects.create(invoice=due, number=1, amount=Decimal("999.00"), status="failed")
    InvoiceFactory(customer=book["B"], period="2026-10", status="open", total=Decimal("49.00"), issued_at=at(11, 1))
    september = InvoiceFactory(customer=book["F"], period="2026-09", status="paid", total=Decimal("1011.34"))
    InvoiceLineFactory(invoice=september, kind=InvoiceLine.Kind.OVERAGE, amount=Decimal("12.34"))
    void = InvoiceFactory(customer=book["G"], period="2026-08", status="void", total=Decimal("100.00"))
    InvoiceLineFactory(invoice=void, kind=InvoiceLine.Kind.OVERAGE, amount=Decimal("100.00"))
    InvoiceFactory(customer=book["H"], period="2026-03", status="uncollectible", total=Decimal("199.00"), issued_at=at(4, 1))
    InvoiceFactory(customer=book["H"], period="2025-11", status="uncollectible", total=Decimal("49.00"),
                   issued_at=at(12, 1, year=2025))


@pytest.fixture
def overview(book, usage, invoices):
    with time_machine.travel(NOW, tick=False):
        yield dashboard_overview()


def test_mrr_counts_paying_and_past_due_customers_but_not_trials(overview):
    assert overview.mrr.mrr == Decimal("1345")
    assert overview.mrr.arr == Decimal("16140")
    assert overview.mrr.paying == 5
    assert overview.mrr.arpa == Decimal("269.00")
    assert (overview.mrr.trial_pipeline, overview.mrr.trials) == (Decimal("199"), 1)


def test_customers_are_counted_by_plan_and_status(overview):
    rows = {row.plan.slug: (row.counts, row.mrr) for row in overview.mrr.by_plan}
    assert rows["starter"] == ({"trial": 0, "active": 3, "past_due": 0, "cancelled": 0}, Decimal("147"))
    assert rows["pro"] == ({"trial": 1, "active": 1, "past_due": 0, "cancelled": 0}, Decimal("199"))
    assert rows["enterprise"][0]["past_due"] == 1
    assert rows["free"][0]["active"] == 2
    assert overview.mrr.status_totals == {"trial": 1, "active": 6, "past_due": 1, "cancelled": 0}


def test_mrr_movements_follow_upgrade_downgrade_churn_reactivation_and_trial_end(overview):
    months = {f"{m.month:%Y-%m}": m for m in overview.movements}
    assert list(months)[0] == "2025-12" and list(months)[-1] == "2026-11"
    expected = {
        "2026-01": {"new": 999}, "2026-02": {"expansion": 150}, "2026-03": {"new": 49}, "2026-04": {"new": 199},
        "2026-06": {"expansion": 150}, "2026-07": {"churned": -199}, "2026-08": {"contraction": -150},
        "2026-09": {"reactivation": 49}, "2026-10": {"new": 49},
    }
    for key, month in months.items():
        moved = {kind: amount for kind, amount in month.amounts.items() if amount}
        assert moved == {k: Decimal(v) for k, v in expected.get(key, {}).items()}, key
        assert month.end_mrr - month.start_mrr == month.net
    assert months["2025-12"].start_mrr == Decimal("49")
    assert months["2026-07"].start_mrr == Decimal("1596") and months["2026-07"].end_mrr == Decimal("1397")
    assert months["2026-11"].end_mrr == overview.mrr.mrr


def test_logo_churn_and_net_revenue_retention(overview):
    july = next(m for m in overview.movements if m.month == date(2026, 7, 1))
    # Paying on 1 July: F, A (on Pro), B, H; B churned. Their MRR: 999+199+199+199 -> 999+199+0+199.
    assert (july.paying_at_start, july.churned_logos, july.logo_churn) == (4, 1, Decimal("25.0"))
    assert july.nrr == Decimal("87.5")  # 1397 / 1596
    assert overview.last_month.month == date(2026, 10, 1)
    assert (overview.last_month.logo_churn, overview.last_month.nrr) == (Decimal("0.0"), Decimal("100.0"))
    # Only H paid a year ago ($49); it pays $199 now.
    assert overview.nrr_year == Decimal("406.1")


def test_signups_and_trial_conversion_by_week(overview):
    weeks = {c.week: c for c in overview.cohorts}
    assert len(weeks) == 12 and min(weeks) == date(2026, 8, 24) and max(weeks) == date(2026, 11, 9)
    cohort = weeks[date(2026, 9, 28)]  # C and D
    assert (cohort.signups, cohort.trials, cohort.trials_ended, cohort.converted) == (2, 2, 2, 1)
    assert cohort.conversion == Decimal("50.0")
    running = weeks[date(2026, 11, 9)]  # E
    assert (running.signups, running.trials, running.trials_ended, running.conversion) == (1, 1, 0, None)
    assert sum(c.signups for c in overview.cohorts) == 3


def test_calls_today_this_month_per_day_and_per_product(overview):
    calls = overview.calls
    assert (calls.today, calls.this_month) == (25_000, 1_065_000)
    assert calls.days[0] == (date(2026, 10, 17), 0) and calls.days[-1] == (date(2026, 11, 15), 25_000)
    assert dict(calls.days)[date(2026, 10, 20)] == 30_000 and len(calls.days) == 30
    assert calls.by_product == (("Geocoding", 1_040_000), ("Text analysis", 25_000))


def test_overage_so_far_and_projected_at_run_rate(overview, book):
    a = next(r for r in overview.customers if r.customer_id == book["A"].pk)
    # 60,000 calls in 14.5 days: 4,137.93 a day. Whole calls per day to come: 2,068 in the rest
    # of the 15th, 4,137 on each of the 15 days after -> 124,123 by the end of November;
    # 50,000 included at $0.001: 10,000 beyond so far ($10.00), 74,123 projected ($74.12).
    assert (a.overage_so_far, a.overage_projected) == (Decimal("10.00"), Decimal("74.12"))
    # F's 1,000,000 stay under Enterprise's 5,000,000; G's Free plan is hard-capped.
    assert (overview.overage_so_far, overview.overage_projected) == (Decimal("10.00"), Decimal("74.12"))
    months = dict(overview.overage_months)
    assert months[date(2026, 9, 1)] == Decimal("12.34") and months[date(2026, 8, 1)] == Decimal("0.00")


def test_top_customers_by_calls_and_revenue_with_growth(overview, book):
    by_calls = [(r.company, r.calls, r.calls_growth) for r in overview.top_by_calls]
    # Against 1-15 October: A's 30,000 of 20 Oct are after the 15th, so A is new; G's 7 of 1 Oct count.
    assert by_calls == [("F", 1_000_000, None), ("A", 60_000, None), ("G", 5_000, Decimal("71328.6"))]
    by_revenue = [(r.company, r.revenue, r.revenue_growth) for r in overview.top_by_revenue]
    # Growth is the month projected against the last invoice: A's $49 + $74.12 projected overage against $49.
    assert by_revenue[:3] == [("F", Decimal("999"), Decimal("0.0")), ("H", Decimal("199"), None),
                              ("A", Decimal("59.00"), Decimal("151.3"))]
    assert {name for name, *_ in by_revenue} == {"F", "H", "A", "B", "C"}


def test_collections_open_past_due_and_uncollectible_this_year(overview):
    c = overview.collections
    assert (c.open_count, c.open_amount) == (2, Decimal("1048.00"))
    assert (c.past_due_count, c.past_due_amount) == (1, Decimal("999.00"))
    assert (c.uncollectible_count, c.uncollectible_amount) == (1, Decimal("199.00"))
    assert [i.status for i in c.invoices].count("open") == 2


def test_the_page_shows_the_numbers_and_links_into_admin(client, book, usage, invoices):
    client.force_login(UserFactory(is_staff=True))
    with time_machine.travel(NOW, tick=False):
        response = client.get(reverse("staff-dashboard"))
    html = response.content.decode()
    assert response.status_code == 200
    assert '<p class="stat-value" id="mrr">$1,345</p>' in html
    assert '<p class="stat-value" id="arr">$16,140</p>' in html
    assert '<p class="stat-value" id="arpa">$269</p>' in html
    assert '<p class="stat-value" id="nrr">406.1%</p>' in html
    assert '<p class="stat-value" id="overage-projected">$74.12</p>' in html
    assert reverse("admin:accounts_customer_change", args=[book["F"].pk]) in html
    assert html.count("<svg") == 5


def test_settled_days_come_from_the_cache_and_yesterday_and_today_stay_live(book, usage):
    with time_machine.travel(NOW, tick=False):
        cold = dashboard_overview().calls
        UsageRecordFactory(customer=book["A"], day=date(2026, 11, 15), product="image", calls=1)
        UsageRecordFactory(customer=book["A"], day=date(2026, 11, 14), product="image", calls=2)
        UsageRecordFactory(customer=book["A"], day=date(2026, 11, 2), product="image", calls=4)  # settled: next day
        warm = dashboard_overview().calls

    assert (warm.today, warm.this_month) == (cold.today + 1, cold.this_month + 3)
    assert warm.per_customer[book["A"].pk][0] == cold.per_customer[book["A"].pk][0] + 3


def test_a_staff_price_edit_moves_neither_mrr_now_nor_the_mrr_history(book, usage, invoices, plans):
    with time_machine.travel(NOW, tick=False):
        before = dashboard_overview()
        for slug, price in (("starter", "59"), ("pro", "249")):
            plans[slug].price = Decimal(price)
            plans[slug].save()
        after = dashboard_overview()
        CustomerFactory(company="N", plan=plans["starter"], created_at=NOW)  # signs up after the edit
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        with_newcomer = dashboard_overview()

    assert after.mrr.mrr == before.mrr.mrr == Decimal("1345")
    assert after.mrr.trial_pipeline == Decimal("199")  # E's Pro trial, at the price it took
    assert [(m.month, m.start_mrr, m.end_mrr, m.amounts) for m in after.movements] == [
        (m.month, m.start_mrr, m.end_mrr, m.amounts) for m in before.movements]
    assert [(r.customer_id, r.mrr, r.overage_so_far) for r in after.customers] == [
        (r.customer_id, r.mrr, r.overage_so_far) for r in before.customers]
    # New signups take the new price: 1,345 + 59.
    assert with_newcomer.mrr.mrr == Decimal("1404")
    assert with_newcomer.movements[-1].amounts["new"] == Decimal("59")


def test_a_customer_who_upgraded_mid_month_is_rated_run_by_run(plans):
    customer = CustomerFactory(company="U", plan=plans["starter"], created_at=at(10, 1))
    PlanChangeFactory(customer=customer, from_plan=plans["starter"], to_plan=plans["pro"], at=at(11, 10))
    now_on(customer, plans["pro"])
    UsageRecordFactory(customer=customer, day=date(2026, 11, 3), calls=30_000)
    UsageRecordFactory(customer=customer, day=date(2026, 11, 12), calls=100_000)

    with time_machine.travel(NOW, tick=False):
        row = next(r for r in dashboard_overview().customers if r.customer_id == customer.pk)

    # 10 Nov began on Starter (the change came at 09:00). Starter, 1-10 Nov: 50,000 × 10/30 =
    # 16,667 included; 30,000 calls, 13,333 beyond at $0.001 = $13.33. Professional, 11-30 Nov:
    # 500,000 × 20/30 = 333,333 included; 100,000 calls so far, and at 130,000 calls in 14.5 days
    # 238,957 by the end: none beyond. (A whole-month view would have billed nothing at all.)
    assert (row.overage_so_far, row.overage_projected) == (Decimal("13.33"), Decimal("13.33"))
    assert (row.mrr, row.calls, row.revenue) == (Decimal("199"), 130_000, Decimal("212.33"))


def test_the_cyclic_collector_is_paused_only_while_the_page_is_built(book):
    assert gc.isenabled()
    with time_machine.travel(NOW, tick=False):
        with collector_paused():
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(ZeroDivisionError, match="division"), collector_paused():
            1 / 0
        dashboard_overview()
    assert gc.isenabled()
