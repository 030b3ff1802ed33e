"""The dashboard and its CSV are for staff: customers get a 404, anonymous visitors the login page;
and their cost in queries does not grow with the number of customers."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Customer
from plans.selectors import products_all_cached
from tests.factories import (
    CustomerFactory, InvoiceFactory, InvoiceLineFactory, PlanChangeFactory, UsageRecordFactory, UserFactory,
    seeded_plan,
)

pytestmark = pytest.mark.django_db

PAGES = ["staff-dashboard", "staff-customers-csv"]
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitors_are_sent_to_log_in(client, name):
    response = client.get(reverse(name))

    assert response.status_code == 302
    assert response["Location"] == reverse("login") + "?next=" + reverse(name)


@pytest.mark.parametrize("name", PAGES)
def test_customers_get_a_404(client, customer, name):
    client.force_login(customer.owner)

    assert client.get(reverse(name)).status_code == 404


@pytest.mark.parametrize("name", PAGES)
def test_staff_get_the_page(client, name):
    client.force_login(UserFactory(is_staff=True))

    assert client.get(reverse(name)).status_code == 200


def test_the_csv_lists_every_customer_with_its_figures(client, starter_plan):
    with time_machine.travel(NOW, tick=False):
        paying = CustomerFactory(company="=HYPERLINK(1)", plan=starter_plan, created_at=NOW - timedelta(days=90))
        trial = CustomerFactory(plan=seeded_plan("pro"), status=Customer.Status.TRIAL,
                                trial_ends_at=NOW + timedelta(days=3), created_at=NOW - timedelta(days=11))
        UsageRecordFactory(customer=paying, day=date(2026, 11, 2), calls=51_000)
        UsageRecordFactory(customer=paying, day=date(2026, 10, 2), calls=1_000)
        InvoiceFactory(customer=paying, period="2026-10", status="paid", total=Decimal("49.00"))
        client.force_login(UserFactory(is_staff=True))
        response = client.get(reverse("staff-customers-csv"))

    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="customers-2026-11-15.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_id = {int(row["customer_id"]): row for row in rows}
    assert by_id[paying.pk] == {
        "customer_id": str(paying.pk), "company": "'=HYPERLINK(1)", "plan": "starter", "status": "active",
        "mrr": "49.00", "calls_this_month": "51000", "calls_last_month": "1000",
        "revenue_this_month": "50.00", "revenue_last_month": "49.00",
    }
    assert by_id[trial.pk]["mrr"] == "0.00" and by_id[trial.pk]["status"] == "trial"


def _customers(n: int) -> None:
    """n customers with usage, plan changes and invoices, like a real book in miniature."""
    starter, pro = seeded_plan("starter"), seeded_plan("pro")
    for i in range(n):
        customer = CustomerFactory(plan=pro if i % 3 else starter, created_at=NOW - timedelta(days=200 + i % 50),
                                   status=[Customer.Status.ACTIVE, Customer.Status.PAST_DUE, Customer.Status.TRIAL][i % 3],
                                   trial_ends_at=NOW + timedelta(days=5) if i % 3 == 2 else None)
        if i % 3:
            PlanChangeFactory(customer=customer, from_plan=starter, to_plan=pro, at=NOW - timedelta(days=40 + i % 30))
        UsageRecordFactory(customer=customer, day=date(2026, 11, 1 + i % 14), calls=1_000 + i)
        invoice = InvoiceFactory(customer=customer, period="2026-10", status=["paid", "open", "uncollectible"][i % 3],
                                 total=Decimal("49.00"), issued_at=NOW - timedelta(days=14))
        InvoiceLineFactory(invoice=invoice, kind="overage", amount=Decimal("1.00"))


def _queries_for_dashboard(client, n: int) -> int:
    _customers(n)
    cache.clear()  # cold: the settled days' sums are computed, not read from the cache
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("staff-dashboard"))
        assert response.status_code == 200
    return len(queries)


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True))
    return client


def test_the_dashboard_costs_as_many_queries_for_500_customers_as_for_50(staff_client, django_assert_max_num_queries):
    products_all_cached()  # product names: read once per process, not per page
    small = _queries_for_dashboard(staff_client, 50)
    large = _queries_for_dashboard(staff_client, 450)  # 500 in all

    assert small == large
    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(25):
        staff_client.get(reverse("staff-dashboard"))


def test_the_dashboard_is_served_while_redis_is_unreachable(staff_client, customer, settings):
    UsageRecordFactory(customer=customer, day=date(2026, 11, 2), calls=7)
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0",
                                   "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2}}}

    with time_machine.travel(NOW, tick=False):
        response = staff_client.get(reverse("staff-dashboard"))

    assert response.status_code == 200
    assert response.context["o"].calls.this_month == 7
