from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Customer
from tests.factories import CustomerFactory, UsageRecordFactory, seeded_plan

pytestmark = pytest.mark.django_db
URL = "/admin/accounts/customer/"


def _row(content: str, company: str) -> str:
    start = content.index(f">{company}</a>")
    return content[start:content.index("</tr>", start)]


def test_the_customer_list_shows_plan_status_mrr_and_this_months_calls(admin_client):
    today = timezone.now().date()
    paying = CustomerFactory(company="Paying Co", plan=seeded_plan("pro"))
    UsageRecordFactory(customer=paying, day=today, product="geocode", calls=1200)
    UsageRecordFactory(customer=paying, day=today.replace(day=1), product="text", calls=34)
    UsageRecordFactory(customer=paying, day=today.replace(day=1) - timedelta(days=1), calls=999)  # last month
    CustomerFactory(company="Trial Co", plan=seeded_plan("starter"), status=Customer.Status.TRIAL,
                    trial_ends_at=timezone.now() + timedelta(days=5))
    CustomerFactory(company="Late Co", plan=seeded_plan("starter"), status=Customer.Status.PAST_DUE)

    response = admin_client.get(URL)

    assert response.status_code == 200
    content = response.content.decode()
    for header in ("Plan", "Status", "MRR", "Calls this month"):
        assert f">{header}</a>" in content
    paying_row = _row(content, "Paying Co")
    assert '<td class="field-plan nowrap">Professional</td>' in paying_row
    assert '<td class="field-status">Active</td>' in paying_row
    assert '<td class="field-mrr">199.00</td>' in paying_row
    assert '<td class="field-calls_this_month">1,234</td>' in paying_row
    trial_row = _row(content, "Trial Co")
    assert '<td class="field-mrr">0.00</td>' in trial_row
    assert '<td class="field-calls_this_month">0</td>' in trial_row
    assert '<td class="field-mrr">49.00</td>' in _row(content, "Late Co")


def test_the_customer_list_sorts_by_mrr(admin_client):
    CustomerFactory(company="Small Co", plan=seeded_plan("starter"))
    CustomerFactory(company="Big Co", plan=seeded_plan("enterprise"))
    content = admin_client.get(URL, {"o": "-5"}).content.decode()
    assert content.index(">Big Co</a>") < content.index(">Small Co</a>")


def test_the_customer_list_runs_the_same_queries_for_two_customers_as_for_eight(admin_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(URL).status_code == 200
        return len(captured)

    for _ in range(2):
        UsageRecordFactory(customer=CustomerFactory(), day=timezone.now().date())
    few = queries()
    for _ in range(6):
        UsageRecordFactory(customer=CustomerFactory(), day=timezone.now().date())
    assert queries() == few
