from __future__ import annotations

from django.contrib import admin, messages
from django.db import models
from django.db.models import PROTECT, Count
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from .models import Plan, Product
from .services import product_secrets_rotate, product_sort_order_next, product_upstream_check

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
    # Adding a product here sells it to the plan's new customers; billing's admin also gives it
    # to the customers already on the plan (their terms are snapshots, README "Billing").
    filter_horizontal = ("products",)

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


def _secrets_page(modeladmin, request, revealed: list[tuple[Product, str, str]], title: str) -> TemplateResponse:
    """The one page that ever shows a product's raw service token: never cached, never stored
    (a message would keep it in a cookie or the session until the next page)."""
    context = {**modeladmin.admin_site.each_context(request), "title": title, "revealed": revealed,
               "opts": modeladmin.model._meta}
    response = TemplateResponse(request, "admin/plans/product/secrets.html", context)
    add_never_cache_headers(response)
    return response


@admin.action(description="Check upstream (one GET to its health path)")
def upstream_check(modeladmin, request, queryset) -> None:
    for product in queryset:
        if not product.is_upstream:
            modeladmin.message_user(request, f"{product.name}: built in, served by Tollbooth: nothing to check.",
                                    messages.WARNING)
            continue
        check = product_upstream_check(product)
        if check.status is None:
            modeladmin.message_user(request, f"{product.name}: no answer from {check.url}: {check.error}.",
                                    messages.ERROR)
        else:
            level = messages.SUCCESS if check.ok else messages.WARNING
            modeladmin.message_user(
                request, f"{product.name}: HTTP {check.status} in {check.latency_ms} ms from {check.url}.", level)


@admin.action(description="Rotate signing secret and service token (the old ones stop working at once)")
def secrets_rotate(modeladmin, request, queryset):
    revealed = []
    for product in queryset:
        if not product.is_upstream:
            modeladmin.message_user(request, f"{product.name}: built in, it has no token or secret.", messages.WARNING)
            continue
        revealed.append((product, *product_secrets_rotate(product)))
    if revealed:
        return _secrets_page(modeladmin, request, revealed, "New service tokens and signing secrets")
    return None


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "kind", "upstream_url", "methods", "timeout_seconds", "active", "token",
                    "plan_names", "sort_order")
    list_filter = ("kind", "active")
    search_fields = ("slug", "name", "upstream_url")
    actions = [upstream_check, secrets_rotate]
    readonly_fields = ("kind", "token", "signing", "plan_names")
    # A URL typed without a scheme is taken as https (Django 6's default); http must be written.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    UPSTREAM_FIELDS = ("upstream_url", "methods", "timeout_seconds", "body_limit_bytes", "health_path")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("plans")

    def get_fieldsets(self, request, obj=None):
        main = ("name", "slug", "kind", "description", "active", "sort_order")
        if obj is not None and not obj.is_upstream:
            return [(None, {"fields": (*main, "plan_names")})]
        sets = [(None, {"fields": main}), ("Your service", {"fields": self.UPSTREAM_FIELDS})]
        if obj is not None:
            sets.append(("Credentials", {"fields": ("token", "signing", "plan_names"),
                                         "description": "Shown once when made. Rotate them with the action "
                                                        "on the product list."}))
        return sets

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        # A built-in product is code: its slug is its URL and it is always served.
        return (*fields, "slug", "active") if obj is not None and not obj.is_upstream else fields

    def get_prepopulated_fields(self, request, obj=None):
        return {"slug": ("name",)} if obj is None else {}

    @admin.display(description="service token")
    def token(self, product: Product) -> str:
        if not product.is_upstream:
            return "—"
        return f"tbs_…{product.service_token_last4}" if product.service_token_hash else "none (rotate to make one)"

    @admin.display(description="signing secret")
    def signing(self, product: Product) -> str:
        return "set (whsec_…)" if product.signing_secret else "none (rotate to make one)"

    @admin.display(description="plans")
    def plan_names(self, product: Product) -> str:
        return ", ".join(plan.name for plan in product.plans.all()) or "none: add it to a plan on the plan's page"

    def save_model(self, request, obj: Product, form, change) -> None:
        if not change and obj.is_upstream:
            if not obj.sort_order:
                obj.sort_order = product_sort_order_next()
            obj._revealed = product_secrets_rotate(obj)  # the instance is unsaved: super() writes them
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj: Product, post_url_continue=None):
        revealed = getattr(obj, "_revealed", None)
        if revealed is None:
            return super().response_add(request, obj, post_url_continue)
        return _secrets_page(self, request, [(obj, *revealed)], f"“{obj.name}” added: its service token and "
                                                                 "signing secret")

    def _protected_reason(self, product: Product) -> str:
        if not product.is_upstream:
            return f"{product}: built in (served by Tollbooth); it cannot be deleted."
        if product.plans.exists():
            return (f"{product}: on sale in {', '.join(p.name for p in product.plans.all())}. Remove it from "
                    "those plans first, or untick “Active” to stop serving it.")
        return ""

    def get_deleted_objects(self, objs, request):
        to_delete, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        reasons = [reason for product in objs if (reason := self._protected_reason(product))]
        if reasons:
            perms_needed = {name for name in perms_needed if name != str(Product._meta.verbose_name)}
        return to_delete, counts, perms_needed, [*reasons, *protected]

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and self._protected_reason(obj):
            return False
        return super().has_delete_permission(request, obj)
