"""The portal's usage page (README "Usage export"): calls per day by key for a range of days,
a table per key and product, and the CSV export of the same range.

The rows come from metering.usage_export, the same reader and CSV writer as
`GET /v1/usage/export`, so the page, the button and the API agree to the call.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.decorators import customer_required
from accounts.models import Customer
from metering.usage_export import (
    MAX_DAYS, TestUsageUnavailable, UsageRange, UsageRangeInvalid, UsageRow, usage_csv_response, usage_range_parse,
    usage_rows,
)
from plans.selectors import product_names

from .charts import Chart, Series

# The chart draws this many keys on their own and the rest as one line: five line styles tell
# lines apart in print and for colour-blind readers (static/css/app.css).
CHART_KEYS = 4


class UsageRangeForm(forms.Form):
    """Two dates; checked by metering.usage_export.usage_range_parse, as the API checks them."""

    def __init__(self, data, *, today: date):
        super().__init__(data)
        self.today = today
        self.usage_range: UsageRange | None = None
        for name, label in (("from", "From"), ("to", "To")):
            self.fields[name] = forms.CharField(
                label=label, required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        try:
            self.usage_range = usage_range_parse(self.data, today=self.today)
        except UsageRangeInvalid as problems:
            for name, messages in problems.fields.items():
                for message in messages:
                    self.add_error(name if name in self.fields else None, message)
        return self.cleaned_data


@dataclass(frozen=True)
class KeyTotal:
    key_id: int | None
    name: str
    masked: str
    status: str
    by_product: tuple[int, ...]  # in the order of UsageTable.products
    calls: int


@dataclass(frozen=True)
class UsageTable:
    products: tuple[tuple[str, str], ...]  # (slug, name)
    keys: tuple[KeyTotal, ...]  # busiest first
    product_totals: tuple[int, ...]
    calls: int


def usage_table(rows: list[UsageRow]) -> UsageTable:
    names = product_names()
    products = tuple((slug, names.get(slug, slug)) for slug in sorted({row.product for row in rows}))
    cells: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        cells[(row.key_id, row.key_name, row.key_masked, row.key_status)][row.product] += row.calls
    keys = [KeyTotal(*ident, by_product=tuple(calls.get(slug, 0) for slug, _ in products), calls=sum(calls.values()))
            for ident, calls in cells.items()]
    keys.sort(key=lambda k: (-k.calls, k.name.casefold(), k.key_id or 0))
    totals = tuple(sum(row.calls for row in rows if row.product == slug) for slug, _ in products)
    return UsageTable(products=products, keys=tuple(keys), product_totals=totals, calls=sum(totals))


def usage_chart(rows: list[UsageRow], table: UsageTable, usage_range: UsageRange) -> Chart:
    """Calls per day, one line per key (the busiest CHART_KEYS, then "Other keys")."""
    days = [usage_range.first + timedelta(days=i) for i in range(usage_range.days)]
    index = {day: i for i, day in enumerate(days)}
    shown = table.keys[:CHART_KEYS] if len(table.keys) > CHART_KEYS + 1 else table.keys
    slot = {(k.key_id, k.name): i for i, k in enumerate(shown)}
    values = [[0] * len(days) for _ in range(len(shown) + (len(shown) < len(table.keys)))]
    for row in rows:
        values[slot.get((row.key_id, row.key_name), len(shown))][index[row.day]] += row.calls
    names = [_series_name(k) for k in shown] + (["Other keys"] if len(shown) < len(table.keys) else [])
    fmt = "%d %b" if usage_range.first.year == usage_range.last.year else "%d %b %Y"
    return Chart(
        title=f"Calls per day by key, {usage_range.first:%d %b %Y} to {usage_range.last:%d %b %Y}", kind="line",
        labels=tuple(f"{day:{fmt}}" for day in days),
        series=tuple(Series(name, tuple(v), f"series-{i + 1}") for i, (name, v) in enumerate(zip(names, values))),
    )


def _series_name(key: KeyTotal) -> str:
    return f"{key.name} ({key.masked})" if key.masked else key.name


def _presets(today: date) -> list[tuple[str, str]]:
    """(label, query string) for the ranges people ask for most."""
    this_month = today.replace(day=1)
    last_month_end = this_month - timedelta(days=1)
    ranges = [("This month", this_month, today), ("Last month", last_month_end.replace(day=1), last_month_end),
              ("Last 7 days", today - timedelta(days=6), today), ("Last 30 days", today - timedelta(days=29), today)]
    return [(label, _range_query(first, last)) for label, first, last in ranges]


def _range_query(first: date, last: date) -> str:
    return urlencode({"from": first.isoformat(), "to": last.isoformat()})  # isoformat: year 1 is 0001


@require_GET
@customer_required("usage")
def usage(request: HttpRequest, customer: Customer) -> HttpResponse:
    now = timezone.now()
    form = UsageRangeForm(request.GET, today=now.date())
    if not form.is_valid():
        return _page(request, customer, form, status=400)
    usage_range = form.usage_range
    rows = list(usage_rows(customer_id=customer.pk, usage_range=usage_range, now=now))
    table = usage_table(rows)
    return _page(request, customer, form, usage_range=usage_range, table=table,
                 chart=usage_chart(rows, table, usage_range))


@require_GET
@customer_required("usage")
def usage_export(request: HttpRequest, customer: Customer) -> HttpResponse:
    """The same CSV as `GET /v1/usage/export`, for the signed-in customer."""
    now = timezone.now()
    form = UsageRangeForm(request.GET, today=now.date())
    if not form.is_valid():
        return _page(request, customer, form, status=400)
    try:
        return usage_csv_response(customer_id=customer.pk, usage_range=form.usage_range, now=now)
    except TestUsageUnavailable:
        form.add_error(None, "Test-mode figures are briefly unavailable. Try again in a minute.")
        return _page(request, customer, form, status=503)


def _page(request, customer, form, *, status: int = 200, usage_range=None, table=None, chart=None) -> HttpResponse:
    query = ""
    if usage_range is not None:
        query = _range_query(usage_range.first, usage_range.last)
    context = {
        "customer": customer, "form": form, "usage_range": usage_range, "table": table, "chart": chart,
        "query": query, "presets": _presets(form.today), "max_days": MAX_DAYS,
        "current_query": request.GET.urlencode(),
    }
    return render(request, "dashboard/usage.html", context, status=status)
