from django.contrib import admin

from core.admin import ReadOnlyAdminMixin

from .models import UsageFlush, UsageLimits, UsageRecord


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Usage is money and only the flush writes it: staff may look, never add, edit or delete."""


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ("customer", "api_key", "product", "day", "calls", "updated_at")
    list_filter = ("product", "day")
    search_fields = ("customer__company",)
    list_select_related = ("customer", "api_key")
    date_hierarchy = "day"


@admin.register(UsageFlush)
class UsageFlushAdmin(ReadOnlyAdmin):
    list_display = ("flush_id", "customer", "calls", "created_at")
    list_select_related = ("customer",)
    search_fields = ("flush_id", "customer__company")


@admin.register(UsageLimits)
class UsageLimitsAdmin(admin.ModelAdmin):
    """A customer's alert thresholds and call ceiling (set from its portal settings)."""

    list_display = ("customer", "alert_at_calls", "call_ceiling", "updated_at")
    list_select_related = ("customer",)
    search_fields = ("customer__company",)
    raw_id_fields = ("customer",)
