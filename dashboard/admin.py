from django.contrib import admin

from .models import ReconciliationIssue


@admin.register(ReconciliationIssue)
class ReconciliationIssueAdmin(admin.ModelAdmin):
    list_display = ("period", "customer", "source", "expected", "found", "invoice", "checked_at")
    list_filter = ("source", "period")
    search_fields = ("customer__company",)
    raw_id_fields = ("customer", "invoice")
    readonly_fields = ("customer", "period", "source", "expected", "found", "invoice", "created_at", "checked_at")

    def has_add_permission(self, request) -> bool:
        return False
