from django.contrib import admin

from .models import UsageFlush, UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ("customer", "api_key", "product", "day", "calls", "updated_at")
    list_filter = ("product", "day")
    search_fields = ("customer__company",)
    list_select_related = ("customer", "api_key")
    date_hierarchy = "day"

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # usage is money: only the flush writes it


@admin.register(UsageFlush)
class UsageFlushAdmin(admin.ModelAdmin):
    list_display = ("flush_id", "customer", "calls", "created_at")
    list_select_related = ("customer",)

    def has_change_permission(self, request, obj=None) -> bool:
        return False
