from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from .models import Invoice, InvoiceLine, PaymentAttempt, PlanChange, StripeEvent
from .services import invoice_mark_paid, invoice_void


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    fields = ("position", "kind", "description", "quantity", "unit_price", "amount", "plan", "starts_on", "ends_on")

    # Lines are written by invoice generation only; an issued invoice never changes.
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PaymentAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PaymentAttempt
    extra = 0
    fields = ("number", "amount", "status", "stripe_payment_intent_id", "failure_code", "failure_message",
              "created_at", "finished_at")
    readonly_fields = fields


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
    _each(modeladmin, request, queryset, invoice_mark_paid, "marked paid")


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
