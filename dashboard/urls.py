from django.urls import path

from . import account_views, usage_views, views

urlpatterns = [
    path("", views.portal, name="portal"),
    path("keys/", views.keys, name="portal-keys"),
    path("usage/", usage_views.usage, name="portal-usage"),
    path("usage/export/", usage_views.usage_export, name="portal-usage-export"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="portal-key-revoke"),
    path("keys/<int:key_id>/rotate/", views.key_rotate, name="portal-key-rotate"),
    path("account/", account_views.account, name="portal-account"),
    path("account/email/", account_views.account_email, name="portal-account-email"),
    path("account/password/", account_views.account_password, name="portal-account-password"),
    path("account/delete/", account_views.account_delete, name="portal-account-delete"),
]
