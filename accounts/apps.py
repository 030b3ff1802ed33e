from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from . import login_guard  # noqa: F401  (counts failed sign-ins per account)


class StaffAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with a login limited like the customers' (accounts.admin_site)."""

    default = False  # AccountsConfig stays this module's config for the accounts app

    default_site = "accounts.admin_site.StaffAdminSite"
