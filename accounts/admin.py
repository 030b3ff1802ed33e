from django.contrib import admin

from .models import ApiKey, Customer, Membership, TrialClaim
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


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    can_delete = False
    # Read only: the team changes through its owners' team page, which keeps the last-owner rule.
    fields = ("user", "role", "created_at", "invited_by")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("company", "email", "plan", "status", "trial_ends_at", "created_at")
    list_filter = ("status", "plan")
    search_fields = ("company", "owner__email")
    list_select_related = ("owner", "plan", "terms")
    raw_id_fields = ("owner",)
    # config_version is the API's cache stamp, not something staff read: it stays off the page.
    readonly_fields = ()
    inlines = [MembershipInline, ApiKeyInline]
    # Writing Customer.plan would skip the plan history, the terms and the email of a plan change:
    # billing's admin (which sits above) turns the field back on and saves it through plan_change.
    plan_editable = False

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if obj is None or self.plan_editable else (*fields, "plan")


@admin.register(TrialClaim)
class TrialClaimAdmin(admin.ModelAdmin):
    """Who took a free trial, by mailbox (hashed) or card; written by signups and billing only."""

    list_display = ("kind", "value", "customer", "created_at")
    list_filter = ("kind",)
    search_fields = ("customer__company", "customer__owner__email", "value")
    list_select_related = ("customer",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


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
