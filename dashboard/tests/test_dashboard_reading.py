"""The staff dashboard reads right: "vs last month" compares the same days of each month, charts
count in whole numbers with short labels and a legend, and negative money reads "−$199"."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone as dt_timezone
from decimal import Decimal
from xml.etree import ElementTree

import pytest
import time_machine
from django.template import Context, Template
from django.urls import reverse

from dashboard.charts import Chart, Series, axis_ticks, chart_svg
from dashboard.overview import dashboard_overview
from dashboard.usage_stats import same_days_last_month
from plans.templatetags.money import dollars, money, usd
from tests.factories import CustomerFactory, InvoiceFactory, PlanChangeFactory, UsageRecordFactory, UserFactory, seeded_plan

SVG = "{http://www.w3.org/2000/svg}"
# Four days into November, at noon UTC.
NOW = datetime(2026, 11, 4, 12, 0, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize("today,end", [
    (date(2026, 11, 4), date(2026, 10, 5)),    # 1-4 Nov against 1-4 Oct
    (date(2026, 3, 31), date(2026, 3, 1)),     # 31 March against the whole of February (28 days)
    (date(2028, 3, 30), date(2028, 3, 1)),     # a leap February's 29 days are all of it
    (date(2027, 1, 15), date(2026, 12, 16)),   # across the year
    (date(2026, 12, 1), date(2026, 11, 2)),    # the 1st against the 1st
])
def test_the_same_days_of_last_month_end_at_todays_day_clipped_to_its_length(today, end):
    assert same_days_last_month(today) == end


@pytest.fixture
def usage(db):
    steady = CustomerFactory(company="Steady", plan=seeded_plan("starter"),
                             created_at=datetime(2026, 1, 1, tzinfo=dt_timezone.utc))
    fresh = CustomerFactory(company="Fresh", plan=seeded_plan("starter"),
                            created_at=datetime(2026, 1, 1, tzinfo=dt_timezone.utc))
    # Steady: 1,000 a day on 1-4 Oct (4,000), 45,000 over the rest of October; 5,000 on 1-4 Nov.
    for day in range(1, 5):
        UsageRecordFactory(customer=steady, day=date(2026, 10, day), calls=1_000)
    UsageRecordFactory(customer=steady, day=date(2026, 10, 20), calls=45_000)
    UsageRecordFactory(customer=steady, day=date(2026, 11, 1), calls=2_000)
    UsageRecordFactory(customer=steady, day=date(2026, 11, 4), product="text", calls=3_000)
    # Fresh: only late October (nothing on 1-4 Oct), 800 this month.
    UsageRecordFactory(customer=fresh, day=date(2026, 10, 25), calls=9_000)
    UsageRecordFactory(customer=fresh, day=date(2026, 11, 2), calls=800)
    # 30 Sep is before last month: in neither figure.
    UsageRecordFactory(customer=steady, day=date(2026, 9, 30), calls=70_000)
    return {"steady": steady, "fresh": fresh}


def test_vs_last_month_compares_month_to_date_with_the_same_days_of_last_month(usage):
    with time_machine.travel(NOW, tick=False):
        rows = {r.company: r for r in dashboard_overview().customers}

    steady, fresh = rows["Steady"], rows["Fresh"]
    # 5,000 against 4,000 on 1-4 Oct: +25.0% (against all 49,000 of October it would read −89.8%).
    assert (steady.calls, steady.calls_last_to_date, steady.calls_last, steady.calls_growth) == (
        5_000, 4_000, 49_000, Decimal("25.0"))
    # Nothing on 1-4 Oct: no percentage to show, whatever the rest of October held.
    assert (fresh.calls, fresh.calls_last_to_date, fresh.calls_last, fresh.calls_growth) == (800, 0, 9_000, None)


def test_revenue_growth_compares_the_projected_month_with_last_months_invoice(usage):
    # Steady's October invoice: $49 base + $49.00 of overage. Four days into November its 5,000
    # calls are far inside Starter's 50,000, so November projects to $49: −50.0%.
    InvoiceFactory(customer=usage["steady"], period="2026-10", status="paid", total=Decimal("98.00"))
    with time_machine.travel(NOW, tick=False):
        steady = next(r for r in dashboard_overview().customers if r.company == "Steady")

    assert (steady.revenue, steady.revenue_projected, steady.revenue_last, steady.revenue_growth) == (
        Decimal("49"), Decimal("49"), Decimal("98.00"), Decimal("-50.0"))


def test_the_cached_settled_days_keep_the_same_days_figure(usage):
    with time_machine.travel(NOW, tick=False):
        cold = dashboard_overview().calls.per_customer[usage["steady"].pk]
        warm = dashboard_overview().calls.per_customer[usage["steady"].pk]

    assert cold == warm == (5_000, 49_000, 4_000)


def test_the_dashboard_shows_the_same_days_growth_in_the_top_customers(client, usage):
    client.force_login(UserFactory(is_staff=True))
    with time_machine.travel(NOW, tick=False):
        html = client.get(reverse("staff-dashboard")).content.decode()

    top = html[html.index('id="top-calls"'):html.index('id="top-revenue"')]
    assert re.search(r"Steady</a></td><td>Starter</td><td class=\"num\">5,000</td><td class=\"num\">"
                     r"<span class=\"up\">\+25.0%</span>", top)


@pytest.mark.parametrize("largest,whole,ticks", [
    (3, True, [0, 1, 2, 3]),              # never 0.75 calls
    (5, True, [0, 2, 4, 6]),              # not 1.25, 2.5, 3.75
    (11, True, [0, 5, 10, 15]),
    (25, True, [0, 10, 20, 30]),
    (0, True, [0, 1]),
    (1_000_000, True, [0, 250_000, 500_000, 750_000, 1_000_000]),
    (Decimal("1345.50"), False, [0, 500, 1_000, 1_500]),
    (Decimal("0.30"), False, [0, Decimal("0.1"), Decimal("0.2"), Decimal("0.3")]),
])
def test_axis_ticks_are_round_steps_and_whole_for_counts(largest, whole, ticks):
    assert axis_ticks(float(largest), whole=whole) == ticks


def _ticks(svg: str, cls: str) -> list[str]:
    root = ElementTree.fromstring(svg)
    return [t.text for t in root.iter(f"{SVG}text") if cls in t.get("class", "").split()]


def test_a_count_chart_labels_whole_numbers_and_money_charts_short_dollars():
    calls = Chart("Calls", ("1 Nov", "2 Nov", "3 Nov"), (Series("calls", (1, 5, 2)),))
    mrr = Chart("MRR", ("Oct", "Nov"), (Series("MRR", (Decimal("49"), Decimal("1345.50"))),), kind="line", unit="$")

    assert _ticks(chart_svg(calls), "y-tick") == ["0", "2", "4", "6"]
    assert _ticks(chart_svg(mrr), "y-tick") == ["$0", "$500", "$1k", "$1.5k"]


def test_every_other_x_label_can_be_dropped_on_a_phone():
    labels = tuple(f"{d} Nov" for d in range(1, 31))
    root = ElementTree.fromstring(chart_svg(Chart("Calls", labels, (Series("calls", (1,) * 30),))))

    x = [(t.text, "x-minor" in t.get("class")) for t in root.iter(f"{SVG}text") if "x-tick" in t.get("class")]
    # 30 labels, one in four drawn: 1, 5, 9, ... Nov; on a phone every other of those.
    assert x[:4] == [("1 Nov", False), ("5 Nov", True), ("9 Nov", False), ("13 Nov", True)]


def test_overlapping_lines_get_a_legend_that_draws_each_line():
    chart = Chart("By product", ("1 Nov", "2 Nov"), (Series("Geocoding", (5, 5), "series-1"),
                                                    Series("Text analysis", (5, 5), "series-2")), kind="line")

    html = Template("{% load charts %}{% chart c %}").render(Context({"c": chart}))

    assert ('<figcaption class="chart-legend chart-legend-line"><span class="legend series-1">Geocoding</span>'
            '<span class="legend series-2">Text analysis</span></figcaption>') in html


@pytest.mark.parametrize("value,as_money,as_usd,as_dollars", [
    ("-199", "−199", "−$199", "−$199.00"),
    ("-1250.5", "−1,250.50", "−$1,250.50", "−$1,250.50"),
    ("49", "49", "$49", "$49.00"),
    ("0", "0", "$0", "$0.00"),
    ("-0.001", "0.00", "$0.00", "$0.00"),    # rounds to nothing: no sign on a zero
])
def test_negative_money_has_a_minus_sign_before_the_dollar(value, as_money, as_usd, as_dollars):
    amount = Decimal(value)
    assert (money(amount), usd(amount), dollars(amount)) == (as_money, as_usd, as_dollars)


def test_a_money_chart_prints_a_loss_with_the_minus_first():
    chart = Chart("Net", ("Oct",), (Series("net", (Decimal("-199"),)),), unit="$")

    html = Template("{% load charts %}{% chart c %}").render(Context({"c": chart}))

    assert '<td class="num">−$199</td>' in html and "$-" not in html and "$−" not in html


@pytest.mark.django_db
def test_the_staff_dashboard_prints_a_contraction_as_minus_dollars(client):
    # A Pro customer since January moved to Starter on 3 Nov: −$150 of contraction in November.
    customer = CustomerFactory(company="Shrink", plan=seeded_plan("pro"),
                               created_at=datetime(2026, 1, 1, tzinfo=dt_timezone.utc))
    PlanChangeFactory(customer=customer, from_plan=seeded_plan("pro"), to_plan=seeded_plan("starter"),
                      at=datetime(2026, 11, 3, 9, tzinfo=dt_timezone.utc))
    customer.plan = seeded_plan("starter")
    customer.save()
    client.force_login(UserFactory(is_staff=True))
    with time_machine.travel(NOW, tick=False):
        html = client.get(reverse("staff-dashboard")).content.decode()

    row = html[html.index('data-month="2026-11"'):]
    row = row[:row.index("</tr>")]
    assert '<td class="num mv-contraction">−$150</td>' in row and '<td class="num mv-net">−$150</td>' in row
    assert "$-" not in html
