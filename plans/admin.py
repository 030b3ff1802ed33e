from __future__ import annotations

from django.contrib import admin
from django.db.models import PROTECT, Count

from .models import Plan

IN_USE_HELP = ("A plan in use cannot be deleted: customers, their plan history and their invoices refer to it. "
               "Untick “Is public” to hide it from the pricing page and signup; its customers keep it.")


def plan_uses(plan: Plan) -> str:
    """Who still refers to the plan ("2 customers, 1 invoice"), empty when nothing does.

    Every reference protects the plan from deletion; they are read through the reverse relations,
    so the apps above (billing) need not be imported here."""
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    for relation in Plan._meta.get_fields(include_hidden=True):
        if relation.auto_created and not relation.concrete and relation.on_delete is PROTECT:
            meta = relation.related_model._meta
            count = relation.related_model._base_manager.filter(**{relation.field.name: plan}).count()
            counts[meta.label] = counts.get(meta.label, 0) + count
            names[meta.label] = str(meta.verbose_name if counts[meta.label] == 1 else meta.verbose_name_plural)
    return ", ".join(f"{count} {names[label]}" for label, count in counts.items() if count)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "price", "included_calls", "overage_price", "hard_cap",
                    "rate_per_minute", "trial_days", "is_public", "is_default", "sort_order", "customer_count")
    list_editable = ("is_public", "sort_order")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("in_use",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(customer_total=Count("customers"))

    @admin.display(description="customers", ordering="customer_total")
    def customer_count(self, plan: Plan) -> int:
        return plan.customer_total

    @admin.display(description="in use")
    def in_use(self, plan: Plan) -> str:
        held = plan_uses(plan) if plan.pk else ""
        return f"Yes ({held}). {IN_USE_HELP}" if held else "No: nothing refers to this plan, so it can be deleted."

    def get_deleted_objects(self, objs, request):
        """The bulk delete's confirmation page: a plan in use is listed as protected, with the reason."""
        to_delete, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        reasons = [f"{plan}: {held}. {IN_USE_HELP}" for plan in objs if (held := plan_uses(plan))]
        if not reasons:
            return to_delete, counts, perms_needed, protected
        # Refused for being in use, not for a missing permission: say so instead.
        perms_needed = {name for name in perms_needed if name != str(Plan._meta.verbose_name)}
        return to_delete, counts, perms_needed, [*reasons, *protected]

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and plan_uses(obj):
            return False
        return super().has_delete_permission(request, obj)
