from django.contrib import admin
from django.urls import include, path

from billing.apis import UsageApi
from billing.webhooks import stripe_webhook
from metering.apis import UsageExportApi

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/usage", UsageApi.as_view(), name="usage"),
    path("v1/usage/export", UsageExportApi.as_view(), name="usage-export"),
    path("v1/", include("metering.urls")),
    path("portal/billing/", include("billing.urls")),
    path("billing/stripe/webhook/", stripe_webhook, name="stripe-webhook"),
    path("portal/settings/", include("notifications.urls")),
    path("portal/team/", include("accounts.team_urls")),
    path("portal/", include("dashboard.urls")),
    path("dashboard/", include("dashboard.staff_urls")),
    path("", include("accounts.urls")),
    path("", include("plans.urls")),
]

# /v1 answers JSON even for paths it does not know (README "The metered API"); pages keep HTML.
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
