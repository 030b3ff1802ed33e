"""The portal's usage page: live figures rated by the invoice's own code, the projection billing
will honour, and isolation.

Starter: $49, 50,000 calls included, $0.001 a call beyond; Professional: $199, 500,000, $0.0005.
It is 15 November 2026, 12:00 UTC: 14.5 of November's 30 days have passed. A projection carries
the rate of the billable time so far over the days to come, in whole calls per day (rounded
down), and needs at least a whole day of billable time.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps as django_apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from accounts.models import ApiKey, Customer
from accounts.services import api_key_issue
from accounts.team import team_invite
from billing.invoicing import invoice_generate
from dashboard.selectors import portal_usage
from metering.batcher import meter_commits_send
from plans.selectors import products_all_cached
from tests.factories import CustomerFactory, InvoiceFactory, PlanChangeFactory, UsageRecordFactory, seeded_plan

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=dt_timezone.utc)


@pytest.fixture
def account(starter_plan):
    with time_machine.travel(NOW - timedelta(days=45), tick=False):
        customer = CustomerFactory(plan=starter_plan)
        prod = api_key_issue(customer=customer, name="prod")
        staging = api_key_issue(customer=customer, name="staging")
    UsageRecordFactory(customer=customer, api_key=prod.key, day=date(2026, 11, 1), calls=40_000)
    UsageRecordFactory(customer=customer, api_key=staging.key, day=date(2026, 11, 10), product="text", calls=20_000)
    UsageRecordFactory(customer=customer, api_key=prod.key, day=date(2026, 10, 5), calls=500)
    UsageRecordFactory(customer=customer, api_key=prod.key, day=date(2026, 8, 1), calls=999)  # 106 days ago
    return customer, prod, staging


def _call(raw: str, times: int) -> None:
    client = APIClient()
    for _ in range(times):
        assert client.get("/v1/geocode?q=Paris", HTTP_X_API_KEY=raw).status_code == 200
    meter_commits_send()  # what the commit thread does within half a second: answered calls are billable


def test_usage_is_live_with_the_calls_redis_has_not_flushed_yet(account):
    customer, prod, staging = account
    with time_machine.travel(NOW, tick=False):
        _call(prod.raw, 3)
        usage = portal_usage(customer=customer)

    assert usage.live and usage.unflushed == 3
    assert (usage.calls, usage.billable_calls, usage.included, usage.remaining) == (60_003, 60_003, 50_000, 0)
    assert usage.overage_calls == 10_003 and usage.overage_so_far == Decimal("10.00")
    assert usage.products == [("Geocoding", 40_003), ("Text analysis", 20_000)]
    assert [(row.name, row.calls) for row in usage.per_key] == [("prod", 40_003), ("staging", 20_000)]
    assert len(usage.days) == 30 and usage.days[0] == (date(2026, 11, 1), 40_000) and usage.days[14] == (date(2026, 11, 15), 3)
    assert len(usage.recent_days) == 90 and usage.recent_days[0] == date(2026, 8, 18)
    assert usage.recent_totals == [("Geocoding", 40_503), ("Text analysis", 20_000)]


def test_the_projection_is_the_run_rate_through_the_billing_computation(account):
    customer, *_ = account
    with time_machine.travel(NOW, tick=False):
        usage = portal_usage(customer=customer)

    # 60,000 calls in 14.5 days: 4,137.93 a day -> 2,068 in the rest of the 15th and 4,137 on
    # each of the 15 days after: 124,123 by the end; 74,123 beyond the included 50,000 at $0.001.
    assert usage.projected_calls == 124_123
    assert [(line.kind, line.amount) for line in usage.projected.lines] == [
        ("base", Decimal("49.00")), ("overage", Decimal("74.12"))]
    assert usage.projected.total == Decimal("123.12")


def test_the_projected_invoice_is_what_the_month_close_bills_for_the_same_usage(account):
    customer, prod, _ = account
    with time_machine.travel(NOW, tick=False):
        projected = portal_usage(customer=customer).projected
    # The rest of the month comes in at exactly the projected rate.
    UsageRecordFactory(customer=customer, api_key=prod.key, day=date(2026, 11, 28), calls=124_123 - 60_000)

    with time_machine.travel(datetime(2026, 12, 1, 0, 30, tzinfo=dt_timezone.utc), tick=False):
        invoice = invoice_generate(customer=customer, period="2026-11")

    assert invoice.total == projected.total == Decimal("123.12")
    assert invoice.calls == projected.calls == 124_123
    assert [(l.kind, l.quantity, l.amount) for l in invoice.lines.all()] == [
        (l.kind, l.quantity, l.amount) for l in projected.lines]


def test_calls_on_trial_days_are_shown_but_not_billed(starter_plan):
    with time_machine.travel(datetime(2026, 11, 1, 8, tzinfo=dt_timezone.utc), tick=False):
        customer = CustomerFactory(plan=starter_plan, trial_ends_at=datetime(2026, 11, 5, 8, tzinfo=dt_timezone.utc))
    UsageRecordFactory(customer=customer, day=date(2026, 11, 3), calls=70_000)  # a trial day: free
    UsageRecordFactory(customer=customer, day=date(2026, 11, 6), calls=55_000)

    with time_machine.travel(NOW, tick=False):
        usage = portal_usage(customer=customer)

    # 5 Nov began inside the trial (it ended at 08:00): the one run is 6-30 Nov, 25 days, with
    # 50,000 × 25/30 = 41,667 calls included; 55,000 - 41,667 = 13,333 beyond at $0.001.
    assert (usage.calls, usage.trial_calls, usage.billable_calls) == (125_000, 70_000, 55_000)
    assert [(t.name, t.first, t.last, t.calls) for t in usage.trials] == [
        ("Starter", date(2026, 11, 1), date(2026, 11, 5), 70_000)]
    assert [(r.first, r.last, r.allowance, r.calls, r.overage) for r in usage.runs] == [
        (date(2026, 11, 6), date(2026, 11, 30), 41_667, 55_000, Decimal("13.33"))]
    assert (usage.included, usage.remaining, usage.overage_so_far) == (41_667, 0, Decimal("13.33"))
    # Billable since 6 Nov 00:00: 55,000 in 9.5 days, 5,789.47 a day -> 2,894 in the rest of the
    # 15th and 5,789 on each of 15 days: 144,729. Base 49 × 25/30 = $40.83; 103,062 beyond: $103.06.
    assert usage.projected_calls == 144_729
    assert [(line.kind, line.amount) for line in usage.projected.lines] == [
        ("base", Decimal("0.00")), ("base", Decimal("40.83")), ("overage", Decimal("103.06"))]
    assert usage.projected.total == Decimal("143.89")


def test_the_page_shows_every_figure_and_two_svg_charts(client, account):
    customer, prod, _ = account
    InvoiceFactory(customer=customer, period="2026-10", status="paid", total=Decimal("49.00"), calls=500)
    client.force_login(customer.owner)
    with time_machine.travel(NOW, tick=False):
        response = client.get(reverse("portal"))

    html = response.content.decode()
    assert response.status_code == 200
    for fragment in ('id="calls">60,000<', 'id="included">50,000<', 'id="remaining">0<', 'id="overage">$10<',
                     'id="projected-calls">124,123<', 'id="projected-total">$123.12<', "100 / min", "TB-TEST-"):
        assert fragment in html, fragment
    assert html.count("<svg") == 2 and html.count("<rect") >= 30


def test_the_portal_makes_as_many_queries_for_90_days_of_usage_as_for_one(client, account, starter_plan):
    customer, prod, _ = account
    client.force_login(customer.owner)
    products_all_cached()  # product names: read once per process, not per page
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as few:
        client.get(reverse("portal"))
    for offset in range(90):
        for product in ("geocode", "text", "image"):
            UsageRecordFactory(customer=customer, api_key=None, product=product,
                               day=date(2026, 8, 18) + timedelta(days=offset), calls=10)
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as many:
        client.get(reverse("portal"))

    # Session, user, customer; this period (usage, changes, the customer's trial, terms), keys'
    # usage, keys, credit, spend cap, invoices; the layout's customer and its owner.
    assert len(many) == len(few) <= 14


def _portal_routes() -> list[tuple[str, list[str]]]:
    """Every URL under /portal/ with its integer parameters, so a new one cannot go untested."""
    found = []

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and p.name and (prefix + str(p.pattern)).startswith("portal/"):
                found.append((p.name, [name for name, conv in p.pattern.converters.items()]))

    walk(get_resolver().url_patterns, "")
    return found


def test_every_portal_url_with_another_customers_ids_is_not_found(client, account, starter_plan):
    customer, *_ = account
    other = CustomerFactory(plan=starter_plan)
    webhook_event = django_apps.get_model("notifications", "WebhookEvent")
    ids = {"key_id": api_key_issue(customer=other, name="theirs").key.pk,
           "invoice_id": InvoiceFactory(customer=other, period="2026-10", status="open").pk,
           "event_pk": webhook_event.objects.create(customer=other, type=webhook_event.Type.values[0]).pk,
           "member_id": other.memberships.get().pk,
           "invitation_id": team_invite(customer=other, email="theirs@example.com", role="developer", by=other.owner).pk}
    client.force_login(customer.owner)
    routes = [(name, params) for name, params in _portal_routes() if params]

    assert routes, "no portal URL takes an id"
    for name, params in routes:
        assert set(params) <= set(ids), f"{name} takes {params}: add them to this test"
        url = reverse(name, kwargs={p: ids[p] for p in params})
        # 405 answers the method a page does not take, before any lookup: it reveals nothing.
        statuses = {client.get(url).status_code, client.post(url).status_code}
        assert 404 in statuses and statuses <= {404, 405}, (url, statuses)
    assert ApiKey.objects.get(pk=ids["key_id"]).revoked_at is None


def _upgraded(starter_plan) -> Customer:
    """Starter since October; Professional from 09:00 on 10 November (so 10 Nov is still Starter's)."""
    pro = seeded_plan("pro")
    customer = CustomerFactory(plan=starter_plan, created_at=datetime(2026, 10, 1, 9, tzinfo=dt_timezone.utc))
    PlanChangeFactory(customer=customer, from_plan=starter_plan, to_plan=pro,
                      at=datetime(2026, 11, 10, 9, tzinfo=dt_timezone.utc))
    customer.plan = pro
    customer.save()  # takes Professional's terms; its signup terms stay Starter's
    UsageRecordFactory(customer=customer, day=date(2026, 11, 3), calls=30_000)
    UsageRecordFactory(customer=customer, day=date(2026, 11, 12), calls=100_000)
    return customer


def test_a_customer_who_upgraded_mid_month_sees_each_run_with_its_allowance(client, starter_plan):
    customer = _upgraded(starter_plan)
    client.force_login(customer.owner)
    with time_machine.travel(NOW, tick=False):
        usage = portal_usage(customer=customer)
        html = client.get(reverse("portal")).content.decode()

    # Starter, 1-10 Nov: 50,000 × 10/30 = 16,667 included, 30,000 calls, 13,333 beyond = $13.33.
    # Professional, 11-30 Nov: 500,000 × 20/30 = 333,333 included, 100,000 calls so far.
    assert [(r.terms.name, r.first, r.last, r.allowance, r.calls, r.overage_calls, r.overage) for r in usage.runs] == [
        ("Starter", date(2026, 11, 1), date(2026, 11, 10), 16_667, 30_000, 13_333, Decimal("13.33")),
        ("Professional", date(2026, 11, 11), date(2026, 11, 30), 333_333, 100_000, 0, Decimal("0.00")),
    ]
    assert (usage.calls, usage.included, usage.remaining, usage.overage_so_far) == (
        130_000, 350_000, 233_333, Decimal("13.33"))
    assert usage.percent_used == 30  # 100,000 of the current run's 333,333
    # 130,000 calls in 14.5 days, 8,965.52 a day: 4,482 in the rest of the 15th, 8,965 on each of
    # 15 days -> 268,957, all of the new ones on Professional (none beyond its 333,333).
    # Base: 49 × 10/30 = $16.33 and 199 × 20/30 = $132.67.
    assert usage.projected_calls == 268_957
    assert [(line.kind, line.amount) for line in usage.projected.lines] == [
        ("base", Decimal("16.33")), ("overage", Decimal("13.33")), ("base", Decimal("132.67"))]
    assert usage.projected.total == Decimal("162.33")
    for fragment in ("Starter, 1–10 Nov (10 of 30 days)", ">16,667<", ">13,333<", ">$13.33<",
                     "Professional, 11–30 Nov (20 of 30 days)", ">333,333<", ">100,000<",
                     "$199 / month · 500,000 calls included", 'id="projected-total">$162.33<'):
        assert fragment in html, fragment


def test_a_staff_price_edit_changes_nothing_the_customer_already_reads(client, account, starter_plan):
    customer, *_ = account
    client.force_login(customer.owner)
    with time_machine.travel(NOW, tick=False):
        before = portal_usage(customer=customer)
        starter_plan.price, starter_plan.included_calls, starter_plan.overage_price = Decimal("59"), 40_000, Decimal("0.002")
        starter_plan.save()
        after = portal_usage(customer=customer)
        html = client.get(reverse("portal")).content.decode()

    assert (after.included, after.overage_so_far, after.projected.total) == (50_000, Decimal("10.00"), Decimal("123.12"))
    assert after.projected.lines == before.projected.lines
    assert "$49 / month · 50,000 calls included" in html and "$0.001 a call" in html


def test_right_after_a_trial_signup_there_is_nothing_to_project(client, starter_plan):
    # Five calls a minute for the first hour of a Starter trial: once projected as $276.33.
    with time_machine.travel(NOW, tick=False):
        customer = CustomerFactory(plan=starter_plan, status="trial", trial_ends_at=NOW + timedelta(days=14))
    UsageRecordFactory(customer=customer, day=date(2026, 11, 15), calls=300)
    client.force_login(customer.owner)
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        usage = portal_usage(customer=customer)
        html = client.get(reverse("portal")).content.decode()

    assert usage.projected is None and usage.projected_calls is None
    assert (usage.trial_calls, usage.billable_calls, usage.overage_so_far) == (300, 0, Decimal("0.00"))
    # The trial runs to 12:00 on 29 Nov, so 29 Nov is a trial day: one billed day, 30 Nov, is left.
    assert [(t.first, t.last) for t in usage.trials] == [(date(2026, 11, 15), date(2026, 11, 29))]
    assert [(r.first, r.days, r.allowance) for r in usage.runs] == [(date(2026, 11, 30), 1, 1_667)]
    assert 'id="projected-calls">not enough data yet<' in html
    assert 'id="projected-total">not enough data yet<' in html
    assert "300 on trial days are free: 0 are billable" in html and "$276" not in html


def test_the_first_billable_day_projects_nothing_and_a_whole_day_projects_the_run_rate(starter_plan):
    signup = datetime(2026, 11, 15, 8, tzinfo=dt_timezone.utc)
    with time_machine.travel(signup, tick=False):
        customer = CustomerFactory(plan=starter_plan)
    UsageRecordFactory(customer=customer, day=date(2026, 11, 15), calls=90_000)

    with time_machine.travel(signup + timedelta(hours=12), tick=False):
        assert portal_usage(customer=customer).projected is None  # 12 hours of data
    with time_machine.travel(signup + timedelta(hours=25), tick=False):
        usage = portal_usage(customer=customer)

    # 90,000 calls in the 90,000 s since signup: one a second. 54,000 in the rest of 16 Nov and
    # 86,400 on each of 17-30 Nov: 1,353,600. The run is 15-30 Nov (16 days): 26,667 included
    # (50,000 × 16/30), base 49 × 16/30 = $26.13, 1,326,933 beyond at $0.001 = $1,326.93.
    assert usage.projected_calls == 1_353_600
    assert [(line.kind, line.amount) for line in usage.projected.lines] == [
        ("base", Decimal("26.13")), ("overage", Decimal("1326.93"))]


def test_the_day_a_trial_ends_is_a_trial_day_and_the_next_one_projects_nothing_yet(starter_plan):
    with time_machine.travel(datetime(2026, 10, 28, 9, tzinfo=dt_timezone.utc), tick=False):
        customer = CustomerFactory(plan=starter_plan, trial_ends_at=datetime(2026, 11, 11, 9, tzinfo=dt_timezone.utc))
    for day in range(1, 13):
        UsageRecordFactory(customer=customer, day=date(2026, 11, day), calls=7_200)  # 5 calls a minute

    # 11 Nov began inside the trial: 12 Nov is the first billable day, 20 hours old.
    with time_machine.travel(datetime(2026, 11, 12, 20, tzinfo=dt_timezone.utc), tick=False):
        usage = portal_usage(customer=customer)

    assert usage.projected is None
    assert (usage.trial_calls, usage.billable_calls) == (11 * 7_200, 7_200)
    assert [(r.first, r.days, r.allowance) for r in usage.runs] == [(date(2026, 11, 12), 19, 31_667)]
