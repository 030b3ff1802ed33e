"""The portal's usage page: live figures, the projection billing will honour, and isolation.

Starter: $49, 50,000 calls included, $0.001 a call beyond. It is 15 November 2026, 12:00 UTC:
14.5 of November's 30 days have passed.
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

from accounts.models import ApiKey
from accounts.services import api_key_issue
from billing.services import invoice_generate
from dashboard.selectors import portal_usage
from tests.factories import CustomerFactory, InvoiceFactory, UsageRecordFactory

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

    # 60,000 calls in 14.5 days -> 124,137 in 30; 74,137 beyond the included 50,000 at $0.001.
    assert usage.projected_calls == 124_137
    assert [(line.kind, line.amount) for line in usage.projected.lines] == [
        ("base", Decimal("49.00")), ("overage", Decimal("74.14"))]
    assert usage.projected.total == Decimal("123.14")


def test_the_projected_invoice_is_what_the_month_close_bills_for_the_same_usage(account):
    customer, prod, _ = account
    with time_machine.travel(NOW, tick=False):
        projected = portal_usage(customer=customer).projected
    # The rest of the month comes in at exactly the projected rate.
    UsageRecordFactory(customer=customer, api_key=prod.key, day=date(2026, 11, 28), calls=124_137 - 60_000)

    with time_machine.travel(datetime(2026, 12, 1, 0, 30, tzinfo=dt_timezone.utc), tick=False):
        invoice = invoice_generate(customer=customer, period="2026-11")

    assert invoice.total == projected.total == Decimal("123.14")
    assert invoice.calls == projected.calls == 124_137
    assert [(l.kind, l.quantity, l.amount) for l in invoice.lines.all()] == [
        (l.kind, l.quantity, l.amount) for l in projected.lines]


def test_calls_on_trial_days_are_shown_but_not_billed(starter_plan):
    with time_machine.travel(datetime(2026, 11, 1, 8, tzinfo=dt_timezone.utc), tick=False):
        customer = CustomerFactory(plan=starter_plan, trial_ends_at=datetime(2026, 11, 5, 8, tzinfo=dt_timezone.utc))
    UsageRecordFactory(customer=customer, day=date(2026, 11, 3), calls=70_000)  # a trial day: free
    UsageRecordFactory(customer=customer, day=date(2026, 11, 6), calls=55_000)

    with time_machine.travel(NOW, tick=False):
        usage = portal_usage(customer=customer)

    assert (usage.calls, usage.billable_calls, usage.overage_so_far) == (125_000, 55_000, Decimal("5.00"))
    # Billable since 6 Nov 00:00: 55,000 in 9.5 days -> 144,736 by 1 Dec (25 days).
    assert usage.projected_calls == 144_736
    assert usage.projected.calls == 144_736


def test_the_page_shows_every_figure_and_two_svg_charts(client, account):
    customer, prod, _ = account
    InvoiceFactory(customer=customer, period="2026-10", status="paid", total=Decimal("49.00"), calls=500)
    client.force_login(customer.owner)
    with time_machine.travel(NOW, tick=False):
        response = client.get(reverse("portal"))

    html = response.content.decode()
    assert response.status_code == 200
    for fragment in ('id="calls">60,000<', 'id="included">50,000<', 'id="remaining">0<', 'id="overage">$10<',
                     'id="projected-calls">124,137<', 'id="projected-total">$123.14<', "100 / min", "TB-TEST-"):
        assert fragment in html, fragment
    assert html.count("<svg") == 2 and html.count("<rect") >= 30


def test_the_portal_makes_as_many_queries_for_90_days_of_usage_as_for_one(client, account, starter_plan):
    customer, prod, _ = account
    client.force_login(customer.owner)
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as few:
        client.get(reverse("portal"))
    for offset in range(90):
        for product in ("geocode", "text", "image"):
            UsageRecordFactory(customer=customer, api_key=None, product=product,
                               day=date(2026, 8, 18) + timedelta(days=offset), calls=10)
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as many:
        client.get(reverse("portal"))

    assert len(many) == len(few) <= 12


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
           "event_pk": webhook_event.objects.create(customer=other, type=webhook_event.Type.values[0]).pk}
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
