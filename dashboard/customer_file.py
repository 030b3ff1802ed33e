"""Everything staff need on one customer's page (README "Staff console"), read through the same
selectors the portal and the invoices use: the figures here are the customer's own figures.

Alerts and webhook deliveries are not read here: they belong to `notifications`, a sibling app
this one never imports, and the page's template composes them from notifications' own template
tags (`notifications.templatetags.customer_record`)."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F, Prefetch

from accounts.models import ApiKey, Customer
from accounts.selectors import api_keys_for_customer
from billing.models import CreditEntry, Invoice, PaymentAttempt, PlanChange
from billing.selectors import credit_balance
from plans.selectors import product_names

from .charts import Chart, Series
from .models import ReconciliationIssue, StaffAction
from .selectors import PortalUsage, portal_usage
from .timeline import Event, customer_timeline

LISTED = 24


@dataclass(frozen=True)
class CustomerFile:
    customer: Customer
    usage: PortalUsage
    usage_chart: Chart
    plan_changes: list[PlanChange]
    invoices: list[Invoice]
    credits: list[CreditEntry]
    credit_balance: Decimal
    keys: list[ApiKey]
    issues: list[ReconciliationIssue]
    actions: list[StaffAction]
    timeline: list[Event]


def product_chart(usage: PortalUsage, title: str = "Calls per day by product, last 90 days") -> Chart:
    """The portal's 90-day chart: one line per product."""
    names = product_names()
    return Chart(
        title=title, kind="line", labels=tuple(f"{day:%d %b}" for day in usage.recent_days),
        series=tuple(Series(names.get(slug, slug), usage.recent_by_product[slug], f"series-{i + 1}")
                     for i, slug in enumerate(sorted(usage.recent_by_product))),
    )


def customer_file(*, customer: Customer) -> CustomerFile:
    usage = portal_usage(customer=customer)
    attempts = Prefetch("attempts", queryset=PaymentAttempt.objects.order_by("number"))
    return CustomerFile(
        customer=customer, usage=usage, usage_chart=product_chart(usage),
        plan_changes=list(PlanChange.objects.filter(customer=customer).select_related("from_plan", "to_plan")
                          .order_by("-at", "-pk")),
        invoices=list(Invoice.objects.filter(customer=customer).prefetch_related(attempts).order_by("-period", "-pk")),
        credits=list(CreditEntry.objects.filter(customer=customer).select_related("invoice")[:LISTED]),
        credit_balance=credit_balance(customer_id=customer.pk),
        keys=list(api_keys_for_customer(customer=customer)),
        issues=list(ReconciliationIssue.objects.filter(customer=customer).select_related("invoice")
                    .order_by(F("resolved_at").asc(nulls_first=True), "-period", "source")),
        actions=list(StaffAction.objects.filter(customer=customer)[:LISTED]),
        timeline=customer_timeline(customer=customer),
    )
