from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/", include("metering.urls")),
    path("portal/", include("dashboard.urls")),
    path("", include("accounts.urls")),
    path("", include("plans.urls")),
]

# /v1 answers JSON even for paths it does not know (DESIGN §4); pages keep HTML.
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
