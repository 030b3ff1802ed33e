from __future__ import annotations

from django.contrib import admin

from .models import OutboxTask


@admin.register(OutboxTask)
class OutboxTaskAdmin(admin.ModelAdmin):
    """Read-only: rows are written by commits and sent by the drain task."""

    list_display = ("task", "created_at", "sent_at", "attempts", "last_error")
    list_filter = ("task", ("sent_at", admin.EmptyFieldListFilter))
    search_fields = ("task",)
    ordering = ("-created_at",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
