from django.contrib import admin

from .models import ApiKey, Customer
from .services import api_key_revoke


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fk_name = "customer"
    extra = 0
    can_delete = False
    # Keys are issued through the portal/services only: admin sees masks, never a raw key or hash.
    fields = ("name", "masked", "created_at", "last_used_at", "call_count", "revoked_at", "expires_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("company", "email", "plan", "status", "trial_ends_at", "created_at")
    list_filter = ("status", "plan")
    search_fields = ("company", "owner__email")
    list_select_related = ("owner", "plan")
    raw_id_fields = ("owner",)
    readonly_fields = ("config_version",)
    inlines = [ApiKeyInline]


@admin.action(description="Revoke selected keys")
def revoke_keys(modeladmin, request, queryset) -> None:
    for key in queryset:
        api_key_revoke(key=key)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "masked", "customer", "created_at", "last_used_at", "call_count", "revoked_at", "expires_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "last8", "customer__company")
    list_select_related = ("customer",)
    fields = ("customer", "name", "masked", "created_at", "last_used_at", "call_count", "revoked_at", "expires_at")
    readonly_fields = ("customer", "masked", "created_at", "last_used_at", "call_count")
    actions = [revoke_keys]

    def has_add_permission(self, request) -> bool:
        return False
