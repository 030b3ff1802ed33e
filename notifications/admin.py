from django.contrib import admin

from .models import NotificationSettings, UsageAlert, WebhookDelivery, WebhookEndpoint, WebhookEvent


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    list_display = ["customer", "alerts_enabled", "thresholds", "spend_cap", "cap_mode", "updated_at"]
    list_select_related = ["customer"]
    search_fields = ["customer__company"]
    raw_id_fields = ["customer"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    # The signing secrets stay out of admin: staff never need them, and pages get screenshotted.
    # The URL is the customer's to set, through the checks of the settings page.
    list_display = ["customer", "url", "updated_at"]
    fields = ["customer", "url", "secret_hint", "previous_expires_at", "created_at", "updated_at"]
    readonly_fields = fields
    list_select_related = ["customer"]
    search_fields = ["customer__company", "url"]

    def has_add_permission(self, request) -> bool:
        return False


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = ["started_at", "url", "response_status", "duration_ms", "error", "succeeded", "manual"]
    readonly_fields = fields


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "customer", "type", "status", "attempts", "created_at", "next_attempt_at"]
    list_filter = ["status", "type"]
    list_select_related = ["customer"]
    search_fields = ["event_id", "customer__company"]
    readonly_fields = ["event_id", "customer", "type", "data", "created_at", "delivered_at"]
    inlines = [WebhookDeliveryInline]


@admin.register(UsageAlert)
class UsageAlertAdmin(admin.ModelAdmin):
    list_display = ["customer", "period", "kind", "threshold", "month_calls", "created_at"]
    list_filter = ["kind", "period"]
    list_select_related = ["customer"]
    search_fields = ["customer__company"]
