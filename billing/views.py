"""The portal's billing pages: plan and status, card on file, plan change, cancel, invoices."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.validators import slug_re
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

import outbox
from accounts.decorators import customer_required
from accounts.forms import add_service_errors
from accounts.models import Customer
from plans.selectors import plans_public

from . import gateway
from .cards import CardSetupFailed, card_remove, card_setup_confirm, card_setup_start
from .forms import PlanChangeForm
from .gateway import BillingError
from .models import Invoice, PaymentMethod
from .selectors import invoices_for_customer, plan_change_preview
from .scheduled_ends import (
    cancel_end_preview, cancel_undo, card_removal_preview, customer_cancel_at_period_end, scheduled_end,
)
from .subscriptions import customer_cancel, plan_change as plan_change_service, plan_change_check
from .tasks import stripe_customer_ensure_task


@require_GET
@customer_required("billing")
def billing(request: HttpRequest, customer: Customer) -> HttpResponse:
    if gateway.is_configured() and not customer.stripe_customer_id:
        # Ready before the customer opens the card form (which would otherwise create it then).
        outbox.enqueue(stripe_customer_ensure_task, customer_id=customer.pk)
    context = {
        "customer": customer,
        "card": PaymentMethod.objects.filter(customer=customer).first(),
        "invoices": invoices_for_customer(customer=customer),
        "stripe_ready": gateway.is_configured(),
        "grace_days": settings.BILLING_GRACE_DAYS,
        "scheduled": scheduled_end(customer=customer),
    }
    return render(request, "billing/billing.html", context)


@require_GET
@customer_required("billing")
def card(request: HttpRequest, customer: Customer) -> HttpResponse:
    """The card Element page: a fresh SetupIntent each visit (unused ones simply expire)."""
    if not gateway.is_configured():
        messages.error(request, "Card payments are not set up on this server yet.")
        return redirect("billing")
    try:
        intent = card_setup_start(customer=customer)
    except BillingError:
        messages.error(request, "We could not reach our payment provider. Please try again in a minute.")
        return redirect("billing")
    context = {
        "customer": customer,
        "card": PaymentMethod.objects.filter(customer=customer).first(),
        "client_secret": intent.client_secret,
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "stripe_js_url": settings.STRIPE_JS_URL,
        "return_url": request.build_absolute_uri(reverse("billing-card-done")),
    }
    return render(request, "billing/card.html", context)


@require_GET
@customer_required("billing")
def card_done(request: HttpRequest, customer: Customer) -> HttpResponse:
    """Where the browser lands after confirmCardSetup; Stripe, not the URL, says what happened."""
    setup_intent_id = request.GET.get("setup_intent", "")
    if not setup_intent_id.startswith("seti_") or len(setup_intent_id) > 100:
        messages.error(request, "The card was not saved. Please try again.")
        return redirect("billing-card")
    try:
        method = card_setup_confirm(customer=customer, setup_intent_id=setup_intent_id)
    except CardSetupFailed as exc:
        messages.error(request, str(exc))
        return redirect("billing-card")
    except BillingError:
        messages.error(request, "We could not reach our payment provider. Please try again in a minute.")
        return redirect("billing-card")
    messages.success(request, f"Card saved: {method.brand.title()} ending in {method.last4}.")
    return redirect("billing")


@require_http_methods(["GET", "POST"])
@customer_required("billing")
def plan_change(request: HttpRequest, customer: Customer) -> HttpResponse:
    """Two steps: pick a plan, then confirm with its prorated effect on this month shown."""
    # The pricing page's "Switch to <plan>" links here with ?plan=<slug>: that plan comes preselected.
    requested = request.GET.get("plan", "")[:50]
    offered = plans_public().filter(slug=requested).first() if slug_re.match(requested) else None
    initial = {"plan": offered.pk if offered else customer.plan_id}
    form = PlanChangeForm(request.POST or None, customer=customer, initial=initial)
    if request.method == "POST" and form.is_valid():
        plan = form.cleaned_data["plan"]
        if form.cleaned_data["confirm"]:
            try:
                plan_change_service(customer=customer, plan=plan)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"You are now on the {plan.name} plan. New limits apply to your next call.")
                return redirect("billing")
        if form.is_valid():
            try:  # a card needed first is said here, not after "Confirm"
                starts_trial = plan_change_check(customer=customer, plan=plan)
            except ValidationError as exc:
                add_service_errors(form, exc)
                return render(request, "billing/plan_change.html", {"customer": customer, "form": form})
            preview = plan_change_preview(customer=customer, plan=plan, starts_trial=starts_trial)
            context = {"customer": customer, "plan": plan, "preview": preview, "change": abs(preview.difference)}
            return render(request, "billing/plan_confirm.html", context)
    return render(request, "billing/plan_change.html", {"customer": customer, "form": form})


CANCEL_CHOICES = ("period_end", "now", "keep")


@require_http_methods(["GET", "POST"])
@customer_required("billing")
def cancel(request: HttpRequest, customer: Customer) -> HttpResponse:
    """At the period's end unless "now" is chosen; "keep" undoes an end scheduled before."""
    context = {"customer": customer, "scheduled": scheduled_end(customer=customer),
               "end": cancel_end_preview(customer=customer)}
    if request.method == "GET" or customer.status == Customer.Status.CANCELLED:
        return render(request, "billing/cancel.html", context)
    when = request.POST.get("when", "period_end")
    if when not in CANCEL_CHOICES:
        context["error"] = "Choose when your subscription ends."
        return render(request, "billing/cancel.html", context, status=400)
    try:
        if when == "now":
            customer_cancel(customer=customer)
            messages.success(request, "Your subscription is cancelled. Your final invoice is below.")
        elif when == "keep":
            cancel_undo(customer=customer)
            messages.success(request, "Your subscription continues: nothing ends at the end of the month.")
        else:
            end = customer_cancel_at_period_end(customer=customer)
            messages.success(request, (
                f"Your subscription ends after {end.last_day:%-d %B %Y}. Until then your keys work as now; "
                "you can keep the subscription from this page."
            ))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("billing")


@require_http_methods(["GET", "POST"])
@customer_required("billing")
def card_remove_page(request: HttpRequest, customer: Customer) -> HttpResponse:
    """Says what removing the card does to the plan, then (POST) detaches it at Stripe."""
    card = PaymentMethod.objects.filter(customer=customer).first()
    if request.method == "POST" and card is not None:
        try:
            end = card_remove(customer=customer)
        except BillingError:
            messages.error(request, "We could not reach our payment provider. Please try again in a minute.")
            return redirect("billing-card-remove")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("billing")
        ending = ""
        if end is not None:
            after = "your subscription ends" if end.cancels else f"you move to the {end.plan.name} plan"
            ending = f" {customer.plan.name} needs a card: {after} after {end.last_day:%-d %B %Y}."
        messages.success(request, f"Card removed: {card.brand.title()} ending in {card.last4}.{ending}")
        return redirect("billing")
    if card is None:
        messages.info(request, "There is no card on file.")
        return redirect("billing")
    context = {"customer": customer, "card": card, "end": card_removal_preview(customer=customer)}
    return render(request, "billing/card_remove.html", context)


@require_GET
@customer_required("billing")
def invoice_detail(request: HttpRequest, customer: Customer, invoice_id: int) -> HttpResponse:
    # Another customer's invoice, or a draft, looks exactly like no invoice at all.
    invoice = (
        Invoice.objects.filter(pk=invoice_id, customer=customer).exclude(status=Invoice.Status.DRAFT)
        .select_related("plan", "customer__owner").prefetch_related("lines", "attempts").first()
        if 0 < invoice_id < 2**63 else None
    )
    if invoice is None:
        raise Http404("No such invoice")
    return render(request, "billing/invoice.html", {"customer": customer, "invoice": invoice})
