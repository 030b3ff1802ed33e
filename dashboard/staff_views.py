"""Staff revenue dashboard and its CSV export (README "Usage portal and revenue dashboard"). Staff only: anyone else signed in gets
a 404, as if the page did not exist; anonymous visitors are sent to log in."""
from __future__ import annotations

import csv
from functools import wraps
from typing import Callable

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.models import Invoice

from .charts import Chart, Series
from .models import ReconciliationIssue
from .book import book_load
from .figures import month_start
from .invoice_stats import invoice_totals
from .overview import Overview, collector_paused, customer_revenue, dashboard_overview
from .usage_stats import call_stats

ISSUES_LISTED = 50


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise Http404("No such page")
        return view(request, *args, **kwargs)

    return wrapper


def _charts(o: Overview) -> dict[str, Chart]:
    months = tuple(m.label for m in o.movements)
    return {
        "daily_calls": Chart("Calls per day, last 30 days", tuple(f"{d:%d %b}" for d, _ in o.calls.days),
                             (Series("calls", tuple(n for _, n in o.calls.days)),)),
        "mrr": Chart("MRR at month end", months, (Series("MRR", tuple(m.end_mrr for m in o.movements)),),
                     kind="line", unit="$"),
        "movements": Chart("MRR gained and lost per month", months, (
            Series("gained (new, expansion, reactivation)", tuple(
                m.amounts["new"] + m.amounts["expansion"] + m.amounts["reactivation"] for m in o.movements), "series-1"),
            Series("lost (contraction, churn)", tuple(
                -(m.amounts["contraction"] + m.amounts["churned"]) for m in o.movements), "series-2"),
        ), unit="$"),
        "overage": Chart("Overage billed per month", tuple(f"{d:%b %Y}" for d, _ in o.overage_months),
                         (Series("overage", tuple(a for _, a in o.overage_months)),), unit="$"),
        "signups": Chart("Signups per week", tuple(c.label for c in o.cohorts),
                         (Series("signups", tuple(c.signups for c in o.cohorts)),)),
    }


@require_GET
@staff_required
def revenue_dashboard(request: HttpRequest) -> HttpResponse:
    overview = dashboard_overview()
    issues = ReconciliationIssue.objects.select_related("customer").order_by("-period", "-checked_at", "pk")
    context = {
        "o": overview,
        "charts": _charts(overview),
        "issues": list(issues[:ISSUES_LISTED]),
        "issue_count": issues.count(),
        "invoice_admin": admin.site.is_registered(Invoice),
    }
    return render(request, "dashboard/staff/dashboard.html", context)


class _Echo:
    def write(self, value: str) -> str:
        return value


CSV_HEADER = ["customer_id", "company", "plan", "status", "mrr", "calls_this_month", "calls_last_month",
              "revenue_this_month", "revenue_last_month"]


@require_GET
@staff_required
def customers_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Every customer, the same figures the dashboard shows; money as plain decimals."""
    with collector_paused():
        book = book_load()
        last_period = f"{month_start(book.now.date(), 1):%Y-%m}"
        rows = customer_revenue(book=book, calls=call_stats(now=book.now), last_totals=invoice_totals(period=last_period))
    writer = csv.writer(_Echo())
    lines = [CSV_HEADER] + [
        [r.customer_id, r.company, r.plan.slug, r.status, f"{r.mrr:.2f}", r.calls, r.calls_last,
         f"{r.revenue:.2f}", f"{r.revenue_last:.2f}"] for r in rows
    ]
    response = StreamingHttpResponse((writer.writerow(_csv_safe(line)) for line in lines), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="customers-{book.now:%Y-%m-%d}.csv"'
    return response


def _csv_safe(line: list) -> list:
    """Company names come from signups: a leading = + - @ would run as a formula in a spreadsheet."""
    return [f"'{v}" if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v for v in line]
