from django.urls import path

from . import views

urlpatterns = [
    path("", views.settings_page, name="portal-settings"),
    path("webhook/", views.webhook_save, name="portal-settings-webhook"),
    path("webhook/roll/", views.webhook_roll, name="portal-settings-webhook-roll"),
    path("webhook/delete/", views.webhook_delete, name="portal-settings-webhook-delete"),
    path("webhook/test/", views.webhook_test, name="portal-settings-webhook-test"),
    path("webhook/events/<int:event_pk>/resend/", views.webhook_resend, name="portal-settings-webhook-resend"),
]
