from django.contrib import admin

from .models import Plan


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "price", "included_calls", "overage_price", "hard_cap",
                    "rate_per_minute", "trial_days", "is_public", "is_default", "sort_order")
    list_editable = ("is_public", "sort_order")
    prepopulated_fields = {"slug": ("name",)}
