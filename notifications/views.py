"""/portal/settings/: alerts, spend cap, webhook endpoint and its delivery log."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import customer_required
from accounts.forms import add_service_errors
from accounts.models import Customer

from .forms import NotificationSettingsForm, WebhookEndpointForm
from .limits import SendLimited
from .models import NotificationSettings
from .selectors import alert_settings_get, usage_limits_plan, webhook_delivery_log, webhook_endpoint_get, webhook_event_for_customer
from .services import (
    notification_settings_update, webhook_endpoint_delete, webhook_endpoint_set, webhook_event_resend,
    webhook_secret_roll, webhook_test_send,
)

# The session remembers only which endpoint's secret to show once, never the secret itself.
REVEAL_SESSION_KEY = "webhook_secret_reveal"


@require_http_methods(["GET", "POST"])
@customer_required("settings")
def settings_page(request: HttpRequest, customer: Customer) -> HttpResponse:
    form = _settings_form(customer, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            notification_settings_update(
                customer=customer, alerts_enabled=data["alerts_enabled"], thresholds=data["thresholds"],
                spend_cap=data.get("spend_cap"), cap_mode=data.get("cap_mode") or NotificationSettings.CapMode.ALERT,
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Alert settings saved. The API applies them from the next call.")
            return redirect("portal-settings")
    return _page(request, customer, settings_form=form)


@require_POST
@customer_required("settings")
def webhook_save(request: HttpRequest, customer: Customer) -> HttpResponse:
    form = WebhookEndpointForm(request.POST)
    if not form.is_valid():
        return _page(request, customer, webhook_form=form)
    try:
        saved = webhook_endpoint_set(customer=customer, url=form.cleaned_data["url"],
                                     event_types=form.cleaned_data["event_types"])
    except ValidationError as exc:
        add_service_errors(form, exc)
        return _page(request, customer, webhook_form=form)
    if saved.created:
        request.session[REVEAL_SESSION_KEY] = saved.endpoint.pk
        messages.success(request, "Webhook endpoint saved. Copy its signing secret now: it is shown only once.")
    else:
        messages.success(request, "Webhook endpoint updated. The signing secret is unchanged.")
    return redirect("portal-settings")


@require_POST
@customer_required("settings")
def webhook_roll(request: HttpRequest, customer: Customer) -> HttpResponse:
    endpoint = _own_endpoint(customer)
    endpoint = webhook_secret_roll(endpoint=endpoint)
    request.session[REVEAL_SESSION_KEY] = endpoint.pk
    messages.success(request, "New signing secret made. The old one keeps signing events for 24 hours.")
    return redirect("portal-settings")


@require_POST
@customer_required("settings")
def webhook_delete(request: HttpRequest, customer: Customer) -> HttpResponse:
    if webhook_endpoint_delete(customer=customer):
        messages.success(request, "Webhook endpoint removed. No more events are sent.")
    return redirect("portal-settings")


@require_POST
@customer_required("settings")
def webhook_test(request: HttpRequest, customer: Customer) -> HttpResponse:
    _own_endpoint(customer)
    try:
        event = webhook_test_send(customer=customer)
    except SendLimited as exc:
        return _limited(request, customer, exc)
    messages.success(request, f"Test event {event.event_id} sent. Its delivery shows in the log below.")
    return redirect("portal-settings")


@require_POST
@customer_required("settings")
def webhook_resend(request: HttpRequest, customer: Customer, event_pk: int) -> HttpResponse:
    event = webhook_event_for_customer(customer=customer, event_pk=event_pk)
    if event is None:
        raise Http404("No such event")
    _own_endpoint(customer)
    try:
        webhook_event_resend(event=event)
    except SendLimited as exc:
        return _limited(request, customer, exc)
    messages.success(request, f"Event {event.event_id} sent again. The attempt shows in the log below.")
    return redirect("portal-settings")


def _limited(request: HttpRequest, customer: Customer, exc: SendLimited) -> HttpResponse:
    messages.error(request, str(exc))
    response = _page(request, customer, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


def _own_endpoint(customer: Customer):
    endpoint = webhook_endpoint_get(customer=customer)
    if endpoint is None:
        raise Http404("No webhook endpoint")
    return endpoint


def _page(request: HttpRequest, customer: Customer, *, settings_form=None, webhook_form=None, status: int = 200) -> HttpResponse:
    endpoint = webhook_endpoint_get(customer=customer)
    reveal = endpoint is not None and request.session.pop(REVEAL_SESSION_KEY, None) == endpoint.pk
    context = {
        "customer": customer,
        "plan": customer.plan,
        "settings_form": settings_form or _settings_form(customer),
        "webhook_form": webhook_form or WebhookEndpointForm(
            initial={"url": endpoint.url if endpoint else "", "event_types": endpoint.event_types if endpoint else []}),
        "limits": usage_limits_plan(customer=customer),
        "endpoint": endpoint,
        "reveal_secret": endpoint.secret if reveal else None,
        "log": webhook_delivery_log(customer=customer),
    }
    response = render(request, "notifications/settings.html", context, status=status)
    # The page can show a signing secret: keep it out of caches and the back button.
    add_never_cache_headers(response)
    return response


def _settings_form(customer: Customer, data=None) -> NotificationSettingsForm:
    chosen = alert_settings_get(customer=customer)
    initial = {"alerts_enabled": chosen.alerts_enabled, "thresholds": ", ".join(map(str, chosen.thresholds)),
               "spend_cap": chosen.spend_cap, "cap_mode": chosen.cap_mode}
    return NotificationSettingsForm(data, plan=customer.plan, initial=initial)
