from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect

from accounts.admin import CustomerAdmin as AccountsCustomerAdmin
from accounts.models import Customer
from core.admin import ReadOnlyAdminMixin
from plans.admin import PlanAdmin as PlansPlanAdmin
from plans.models import Plan

from .forms import CreditEntryForm, CustomerAdminForm
from .invoicing import invoice_credit_add, invoice_mark_paid, invoice_void
from .models import CreditEntry, Invoice, InvoiceLine, PaymentAttempt, PlanChange, StripeEvent
from .selectors import credit_balance
from .subscriptions import plan_change, plan_product_added, plan_terms_move_schedule


class InvoiceLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Lines are written by invoice generation only; an issued invoice never changes."""

    model = InvoiceLine
    extra = 0
    fields = ("position", "kind", "description", "quantity", "unit_price", "amount", "plan", "starts_on", "ends_on")


class PaymentAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PaymentAttempt
    extra = 0
    fields = ("number", "amount", "status", "stripe_payment_intent_id", "failure_code", "failure_message",
              "created_at", "finished_at")
    readonly_fields = fields


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read as "Attempt 2 · $59.00 · declined" (PaymentAttempt.__str__); written by charging only."""

    list_display = ("__str__", "invoice", "status", "failure_code", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("invoice__number", "invoice__customer__company", "stripe_payment_intent_id")
    list_select_related = ("invoice",)


def _each(modeladmin, request, queryset, service, done: str) -> None:
    changed = 0
    for invoice in queryset:
        try:
            service(invoice=invoice)
            changed += 1
        except ValidationError as error:
            modeladmin.message_user(request, f"{invoice}: {' '.join(error.messages)}", messages.ERROR)
    if changed:
        modeladmin.message_user(request, f"{changed} invoice(s) {done}.", messages.SUCCESS)


@admin.action(description="Mark selected invoices paid (e.g. bank transfer)")
def mark_paid(modeladmin, request, queryset) -> None:
    def paid_by_transfer(*, invoice: Invoice) -> Invoice:
        return invoice_mark_paid(invoice=invoice, paid_by="bank transfer")

    _each(modeladmin, request, queryset, paid_by_transfer, "marked paid")


@admin.action(description="Void selected invoices")
def void(modeladmin, request, queryset) -> None:
    _each(modeladmin, request, queryset, invoice_void, "voided")


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "customer", "period", "status", "total", "calls", "issued_at", "paid_at")
    list_filter = ("status", "period", "is_final")
    search_fields = ("number", "customer__company", "customer__owner__email")
    list_select_related = ("customer",)
    actions = [mark_paid, void]
    inlines = [InvoiceLineInline, PaymentAttemptInline]
    # Status changes go through the actions (the services); nothing here is edited by hand.
    readonly_fields = ("customer", "period", "number", "status", "currency", "subtotal", "total", "plan", "calls",
                       "is_final", "created_at", "issued_at", "paid_at", "voided_at", "next_charge_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PlanChange)
class PlanChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("customer", "from_plan", "to_plan", "reason", "at")
    list_filter = ("reason", "to_plan")
    search_fields = ("customer__company",)
    list_select_related = ("customer", "from_plan", "to_plan")


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("stripe_event_id", "type", "status", "received_at", "processed_at")
    list_filter = ("status", "type")
    search_fields = ("stripe_event_id",)


# Customers and plans are registered by the apps below billing; their plan changes and terms
# moves are billing's, so their admins are re-registered here with those hooks.
admin.site.unregister(Customer)


@admin.register(Customer)
class CustomerAdmin(AccountsCustomerAdmin):
    """The Plan dropdown saves through plan_change(by_staff=True): a PlanChange "changed by staff"
    with the terms it starts, and the plan_changed signal; a refused move is a form error."""

    form = CustomerAdminForm
    plan_editable = True

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "credit_balance")

    @admin.display(description="credit balance")
    def credit_balance(self, obj: Customer) -> str:
        """What the next invoices will use first; staff add to it under Credit entries."""
        return f"${credit_balance(customer_id=obj.pk):,.2f}" if obj.pk else "$0.00"

    def save_model(self, request, obj: Customer, form, change: bool) -> None:
        if not change or "plan" not in form.changed_data:
            super().save_model(request, obj, form, change)
            return
        target = obj.plan
        # The other fields are saved with the plan held now; only the service moves it.
        obj.plan_id = Customer.objects.values_list("plan_id", flat=True).get(pk=obj.pk)
        super().save_model(request, obj, form, change)
        plan_change(customer=obj, plan=target, by_staff=True)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as error:
            # plan_change refused what the form's check allowed a moment before (a concurrent
            # change): the admin's transaction rolled back everything, so say why and reload.
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


@admin.action(description="Move customers to the current terms from next month (emails each a notice)")
def terms_move(modeladmin, request, queryset) -> None:
    for plan in queryset:
        moves = plan_terms_move_schedule(plan=plan)
        if not moves:
            modeladmin.message_user(request, f"{plan}: no customer waits for a move to its current terms.")
            continue
        starts = f"{moves[0].at.day} {moves[0].at:%B %Y}"
        modeladmin.message_user(
            request, f"{plan}: {len(moves)} customer(s) move to its current terms on {starts}; each was sent a notice.",
            messages.SUCCESS,
        )


admin.site.unregister(Plan)


@admin.register(Plan)
class PlanAdmin(PlansPlanAdmin):
    actions = [*PlansPlanAdmin.actions, terms_move]

    def save_related(self, request, form, formsets, change) -> None:
        plan = form.instance
        before = set(plan.products.values_list("pk", flat=True)) if change else set()
        super().save_related(request, form, formsets, change)
        # A product added to the plan is for its customers too, at once (removing one is not:
        # customers keep the terms they took).
        for product in plan.products.exclude(pk__in=before):
            given = plan_product_added(plan=plan, product=product)
            if given:
                self.message_user(request, f"{given} customer(s) of {plan} can call {product} now.", messages.SUCCESS)


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    """Staff add credit with a reason; invoices use it up to their charges and the rest carries
    forward (README "Billing"). Entries are a ledger: never edited or deleted."""

    list_display = ("customer", "amount", "reason", "invoice", "created_by", "created_at")
    list_select_related = ("customer", "invoice")
    search_fields = ("customer__company", "reason")
    raw_id_fields = ("customer",)
    form = CreditEntryForm

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj: CreditEntry, form, change: bool) -> None:
        saved = invoice_credit_add(customer=obj.customer, amount=obj.amount, description=obj.reason,
                                   by=request.user.get_username())
        obj.pk, obj.created_at, obj.created_by = saved.pk, saved.created_at, saved.created_by
