"""Admin pieces every app's admin shares (core has no models: Django registers nothing here)."""
from __future__ import annotations


class ReadOnlyAdminMixin:
    """Rows that only our services write (usage, plan changes, payment attempts, Stripe's
    events): staff may look, never add, edit or delete. For a ModelAdmin or an inline."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
