"""What issued invoices say, for the staff dashboard: each customer's total for a period, the
overage billed per month, and collections (open, past due, uncollectible). Void and draft
invoices are left out."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, Q, Sum

from accounts.models import Customer
from billing.models import Invoice, InvoiceLine
from core.money import ZERO

from .figures import month_start

ISSUED = (Invoice.Status.OPEN, Invoice.Status.PAID, Invoice.Status.UNCOLLECTIBLE)


def invoice_totals(*, period: str) -> dict[int, Decimal]:
    rows = Invoice.objects.filter(period=period, status__in=ISSUED).values_list("customer_id", "total")
    return dict(rows)


def overage_by_month(*, today: date, months: int = 12) -> list[tuple[date, Decimal]]:
    """Overage billed per period: overage lines of issued invoices (void and draft left out)."""
    periods = [f"{month_start(today, back):%Y-%m}" for back in range(months - 1, -1, -1)]
    sums = dict(InvoiceLine.objects.filter(
        kind=InvoiceLine.Kind.OVERAGE, invoice__status__in=ISSUED, invoice__period__in=periods,
    ).values_list("invoice__period").annotate(s=Sum("amount")).order_by())
    return [(date(int(p[:4]), int(p[5:]), 1), sums.get(p) or ZERO) for p in periods]


# ---------------------------------------------------------------- collections (2 queries)

@dataclass(frozen=True)
class Collections:
    open_count: int
    open_amount: Decimal
    past_due_count: int
    past_due_amount: Decimal
    uncollectible_count: int
    uncollectible_amount: Decimal
    invoices: tuple[Invoice, ...] = field(default=())


def collections(*, now: datetime, listed: int = 20) -> Collections:
    """Open invoices; past due = open with a failed charge or a past-due customer; uncollectible
    issued since 1 January."""
    open_ = Q(status=Invoice.Status.OPEN)
    year = Q(status=Invoice.Status.UNCOLLECTIBLE, issued_at__year=now.year)
    agg = Invoice.objects.aggregate(
        oc=Count("pk", filter=open_), os=Sum("total", filter=open_),
        uc=Count("pk", filter=year), us=Sum("total", filter=year),
    )
    failed = Q(customer__status=Customer.Status.PAST_DUE) | Q(attempts__status="failed")
    due = Invoice.objects.filter(pk__in=Invoice.objects.filter(open_ & failed).values("pk")).aggregate(
        n=Count("pk"), s=Sum("total"))
    listing = tuple(Invoice.objects.filter(status__in=(Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE))
                    .select_related("customer").order_by("issued_at", "pk")[:listed])
    return Collections(agg["oc"], agg["os"] or ZERO, due["n"], due["s"] or ZERO,
                       agg["uc"], agg["us"] or ZERO, listing)

