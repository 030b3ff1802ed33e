"""Credit staff add in admin, and the hard-stop spend cap against plan changes (README "Billing")."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from billing.invoicing import invoice_generate, invoice_issue
from billing.models import CreditEntry, PlanChange
from billing.selectors import credit_balance, invoice_compute
from billing.subscriptions import plan_change
from metering.services import usage_limits_set
from tests.factories import CustomerFactory, UserFactory

from .conftest import at, usage, utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = UserFactory(email="ops@example.com", is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


def test_staff_add_credit_with_a_reason_and_the_balance_shows_on_the_customer(staff_client, october_customer):
    response = staff_client.post("/admin/billing/creditentry/add/", {
        "customer": october_customer.pk, "amount": "12.50", "reason": "Outage on 2 Nov"})
    assert response.status_code == 302
    entry = CreditEntry.objects.get()
    assert (entry.amount, entry.reason, entry.created_by) == (Decimal("12.50"), "Outage on 2 Nov", "ops@example.com")
    page = staff_client.get(f"/admin/accounts/customer/{october_customer.pk}/change/")
    assert page.status_code == 200 and b"$12.50" in page.content


@pytest.mark.parametrize("amount, reason, message", [
    ("-5", "x", b"A credit is a positive amount in cents"),
    ("0", "x", b"A credit is a positive amount in cents"),
    ("1.005", "x", b"Ensure that there are no more than 2 decimal places"),
    ("5", "   ", b"This field is required"),
])
def test_bad_credit_is_a_form_error_and_writes_nothing(staff_client, october_customer, amount, reason, message):
    response = staff_client.post("/admin/billing/creditentry/add/", {
        "customer": october_customer.pk, "amount": amount, "reason": reason})
    assert response.status_code == 200 and message in response.content
    assert not CreditEntry.objects.exists()


def test_a_credit_entry_is_never_edited_or_deleted_in_admin(staff_client, october_customer):
    entry = CreditEntry.objects.create(customer=october_customer, amount=Decimal("5.00"), reason="x")
    assert staff_client.post(f"/admin/billing/creditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert CreditEntry.objects.count() == 1


def test_credit_larger_than_two_invoices_is_used_by_both_and_the_rest_stays(october_customer):
    CreditEntry.objects.create(customer=october_customer, amount=Decimal("120.00"), reason="Goodwill")
    with at(utc(2026, 12, 1, 0, 30)):
        november = invoice_issue(invoice=invoice_generate(customer=october_customer, period="2026-11"))
    with at(utc(2027, 1, 1, 0, 30)):
        december = invoice_issue(invoice=invoice_generate(customer=october_customer, period="2026-12"))
    assert (november.total, december.total) == (Decimal("0.00"), Decimal("0.00"))
    assert credit_balance(customer_id=october_customer.pk) == Decimal("22.00")  # 120 − 49 − 49
    # Issuing again never spends twice.
    invoice_issue(invoice=december)
    assert credit_balance(customer_id=october_customer.pk) == Decimal("22.00")


def test_a_plan_change_that_would_take_the_month_past_a_hard_stop_is_refused(plans):
    customer = CustomerFactory(plan=plans["starter"], created_at=utc(2026, 10, 1))
    usage(customer, date(2026, 11, 3), 140_000)  # 90,000 beyond 50,000: $90 of overage so far
    usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=None, spend_cap=Decimal("150.00"))
    # Starter 1–10 Nov: 16.33 base + (140,000 − 16,667) × 0.001 = 123.33 overage; Pro 11–30: 132.67.
    with at(utc(2026, 11, 10, 12)), pytest.raises(ValidationError, match=r"would come to \$272\.33, above your \$150\.00 spend cap"):
        plan_change(customer=customer, plan=plans["pro"])
    assert not PlanChange.objects.filter(customer=customer).exists()
    usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=None, spend_cap=Decimal("300.00"))
    with at(utc(2026, 11, 10, 12)):
        plan_change(customer=customer, plan=plans["pro"])
    with at(utc(2026, 12, 1, 0, 30)):
        assert invoice_compute(customer=customer, period="2026-11").total <= Decimal("300.00")


def test_a_cap_lowered_after_the_period_does_not_shrink_it(plans):
    customer = CustomerFactory(plan=plans["starter"], created_at=utc(2026, 10, 1))
    usage(customer, date(2026, 11, 3), 450_000)
    with at(utc(2026, 12, 1, 0, 10)):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=None, spend_cap=Decimal("50.00"))
    with at(utc(2026, 12, 1, 0, 30)):
        november = invoice_generate(customer=customer, period="2026-11")
    # 49.00 + 400,000 × 0.001: the $50 cap came after November ended.
    assert november.total == Decimal("449.00")
