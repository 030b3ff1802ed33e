"""Staff revenue dashboard and its CSV export (README "Usage portal and revenue dashboard"). Staff only: anyone else signed in gets
a 404, as if the page did not exist; anonymous visitors are sent to log in."""
from __future__ import annotations

import csv
from functools import wraps
from typing import Callable

from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.forms import add_service_errors
from accounts.models import Customer
from billing.models import Invoice

from . import staff_actions, staff_forms

from .charts import Chart, Series
from .models import ReconciliationIssue
from .book import book_load
from .customer_file import customer_file
from .figures import month_start
from .invoice_stats import invoice_totals
from .overview import Overview, collector_paused, customer_revenue, dashboard_overview
from .staff_search import RESULTS_LISTED, customers_search
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
    # Open drifts only: one staff resolved with a note is explained (the customer's page keeps it).
    issues = ReconciliationIssue.objects.filter(resolved_at__isnull=True).select_related("customer").order_by(
        "-period", "-checked_at", "pk")
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


# --- the staff console: customers, one customer's page, and its actions (README "Staff console") ---

def _actions() -> dict[str, tuple[type, Callable[..., object], str]]:
    """Action name: its form, the service call taking (staff, customer, cleaned data), what success says."""
    return {
        "plan": (staff_forms.PlanForm, lambda s, c, d: staff_actions.staff_plan_change(
            staff=s, customer=c, plan=d["plan"], note=d["note"]), "Plan changed."),
        "trial": (staff_forms.TrialForm, lambda s, c, d: staff_actions.staff_trial_extend(
            staff=s, customer=c, days=d["days"], note=d["note"]), "Trial extended."),
        "credit": (staff_forms.CreditForm, lambda s, c, d: staff_actions.staff_credit_add(
            staff=s, customer=c, amount=d["amount"], reason=d["reason"], note=d["note"]), "Credit added."),
        "paid": (staff_forms.PaidForm, lambda s, c, d: staff_actions.staff_invoice_paid(
            staff=s, customer=c, invoice=d["invoice"], method=d["method"], reference=d["reference"], note=d["note"]),
                 "Invoice marked paid."),
        "void": (staff_forms.InvoiceForm, lambda s, c, d: staff_actions.staff_invoice_void(
            staff=s, customer=c, invoice=d["invoice"], note=d["note"]), "Invoice voided."),
        "resend": (staff_forms.InvoiceForm, lambda s, c, d: staff_actions.staff_invoice_resend(
            staff=s, customer=c, invoice=d["invoice"], note=d["note"]), "Invoice email queued."),
        "cancel": (staff_forms.CancelForm, lambda s, c, d: staff_actions.staff_cancel(
            staff=s, customer=c, note=d["note"]), "Account cancelled; its final invoice is issued."),
    }


ACTIONS = _actions()
INVOICE_FORMS = {"paid", "void", "resend"}


def _form(name: str, customer: Customer, data=None):
    form_class = ACTIONS[name][0]
    kwargs = {"customer": customer} if name in INVOICE_FORMS else {}
    return form_class(data, prefix=name, **kwargs)


@require_GET
@staff_required
def customers(request: HttpRequest) -> HttpResponse:
    form = staff_forms.SearchForm(request.GET or None)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    found = customers_search(query=query)
    context = {"form": form, "query": query, "customers": list(found[:RESULTS_LISTED]),
               "more": found.count() > RESULTS_LISTED}
    return render(request, "dashboard/staff/customers.html", context)


def _customer_page(request: HttpRequest, customer: Customer, bound: dict | None = None, status: int = 200,
                   resolving: dict | None = None) -> HttpResponse:
    forms = {name: _form(name, customer) for name in ACTIONS} | (bound or {})
    file = customer_file(customer=customer)
    issue_forms = [(issue, (resolving or {}).get(issue.pk) or staff_forms.ResolveForm(prefix=f"resolve-{issue.pk}"))
                   for issue in file.issues]
    context = {"f": file, "forms": forms, "invoice_admin": admin.site.is_registered(Invoice), "issue_forms": issue_forms}
    return render(request, "dashboard/staff/customer.html", context, status=status)


@require_GET
@staff_required
def customer_detail(request: HttpRequest, customer_id: int) -> HttpResponse:
    return _customer_page(request, get_object_or_404(Customer.objects.select_related("owner", "plan"), pk=customer_id))


@require_POST
@staff_required
def customer_action(request: HttpRequest, customer_id: int, action: str) -> HttpResponse:
    if action not in ACTIONS:
        raise Http404("No such action")
    customer = get_object_or_404(Customer.objects.select_related("owner", "plan"), pk=customer_id)
    form = _form(action, customer, request.POST)
    if form.is_valid():
        try:
            ACTIONS[action][1](request.user, customer, form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, ACTIONS[action][2])
            return redirect(reverse("staff-customer", args=[customer.pk]) + "#timeline")
    # Bad input is the form's errors on the page it came from: 400, never a 500.
    return _customer_page(request, Customer.objects.select_related("owner", "plan").get(pk=customer.pk),
                          bound={action: form}, status=400)


@require_POST
@staff_required
def issue_resolve(request: HttpRequest, issue_id: int) -> HttpResponse:
    issue = get_object_or_404(ReconciliationIssue.objects.select_related("customer__owner", "customer__plan"), pk=issue_id)
    form = staff_forms.ResolveForm(request.POST, prefix=f"resolve-{issue.pk}")
    if form.is_valid():
        try:
            staff_actions.issue_resolve(staff=request.user, issue=issue, note=form.cleaned_data["note"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Issue resolved.")
            return redirect(reverse("staff-customer", args=[issue.customer_id]) + "#reconciliation")
    return _customer_page(request, issue.customer, status=400, resolving={issue.pk: form})
