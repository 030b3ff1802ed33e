from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.decorators import customer_required
from accounts.forms import add_service_errors
from accounts.models import ApiKey, Customer
from accounts.reveal import reveal_render, reveal_stash
from accounts.selectors import api_key_for_customer
from accounts.services import api_key_issue, api_key_revoke, api_key_rotate
from metering import testmode
from metering.testmode import calls_in_test_mode
from plans.selectors import product_names

from .forms import ApiKeyCreateForm, ApiKeyRotateForm
from .charts import Chart, Series
from .selectors import invoices_recent, key_table, portal_usage, products_locked


def _own_key(customer: Customer, key_id: int) -> ApiKey:
    key = api_key_for_customer(customer=customer, key_id=key_id)
    if key is None:
        raise Http404("No such key")
    return key


@customer_required("overview")
def portal(request: HttpRequest, customer: Customer) -> HttpResponse:
    usage = portal_usage(customer=customer)
    context = {
        "customer": customer,
        "usage": usage,
        "invoices": invoices_recent(customer=customer),
        "terms": usage.terms,
        "locked_products": products_locked(terms=usage.terms),
        "active_keys": sum(1 for row in usage.per_key if row.key_id is not None and row.active),
        "daily_chart": Chart(
            title=f"Calls per day, {usage.period}", kind="bar",
            labels=tuple(f"{day:%d %b}" for day, _ in usage.days),
            series=(Series("calls", tuple(n for _, n in usage.days)),),
        ),
        "recent_chart": Chart(
            title="Calls per day by product, last 90 days", kind="line",
            labels=tuple(f"{day:%d %b}" for day in usage.recent_days),
            series=tuple(Series(name, usage.recent_by_product[slug], f"series-{i + 1}")
                         for i, (slug, name) in enumerate(_product_names(usage.recent_by_product))),
        ),
    }
    context.update(_test_mode_context(customer))
    return render(request, "dashboard/portal.html", context)


def _test_mode_context(customer: Customer) -> dict:
    """Test-mode calls, shown apart from the billed usage (README "The metered API", test mode)."""
    calls = calls_in_test_mode(customer_id=customer.pk)
    rows = [(name, calls.today.get(slug, 0), calls.month[slug]) for slug, name in _product_names(calls.month)]
    return {"test_calls": calls, "test_rows": rows,
            "test_limits": {"minute": testmode.PER_MINUTE, "day": testmode.PER_DAY}}


def _product_names(by_product: dict) -> list[tuple[str, str]]:
    labels = product_names()
    return [(slug, labels.get(slug, slug)) for slug in sorted(by_product)]


@require_http_methods(["GET", "POST"])
@customer_required("keys")
def keys(request: HttpRequest, customer: Customer) -> HttpResponse:
    form = ApiKeyCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = api_key_issue(customer=customer, name=form.cleaned_data["name"],
                                   test=form.cleaned_data.get("mode") == "test")
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            return _show_new_key(request, issued, f"Key “{issued.key.name}” created.")
    return _keys_page(request, customer, form)


def _show_new_key(request: HttpRequest, issued, message: str) -> HttpResponse:
    """Back to the keys page, which shows the new raw key once."""
    messages.success(request, message)
    response = redirect("portal-keys")
    reveal_stash(request, response, raw=issued.raw, name=issued.key.name)
    return response


def _keys_page(request: HttpRequest, customer: Customer, form: ApiKeyCreateForm) -> HttpResponse:
    table = key_table(customer=customer)
    context = {
        "customer": customer,
        "rows": table.rows,
        "table": table,
        "form": form,
        "active_keys": customer.api_keys.active().count(),
        "max_keys": settings.MAX_ACTIVE_KEYS,
    }
    return reveal_render(request, "dashboard/keys.html", context)


@require_http_methods(["GET", "POST"])
@customer_required("keys")
def key_revoke(request: HttpRequest, customer: Customer, key_id: int) -> HttpResponse:
    key = _own_key(customer, key_id)
    if request.method == "GET":
        return render(request, "dashboard/key_revoke.html", {"key": key, "active": key.is_active()})
    if key.revoked_at is not None:
        messages.info(request, f"Key “{key.name}” was already revoked.")
    else:
        api_key_revoke(key=key)
        messages.success(request, f"Key “{key.name}” revoked. Calls with it are refused from now on.")
    return redirect("portal-keys")


@require_http_methods(["GET", "POST"])
@customer_required("keys")
def key_rotate(request: HttpRequest, customer: Customer, key_id: int) -> HttpResponse:
    key = _own_key(customer, key_id)
    form = ApiKeyRotateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = api_key_rotate(key=key, grace_days=form.cleaned_data["grace_days"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            return _show_new_key(request, issued, f"Key “{key.name}” rotated.")
    context = {"key": key, "form": form, "active": key.is_active()}
    return render(request, "dashboard/key_rotate.html", context)
