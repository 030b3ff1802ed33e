from django.urls import path

from . import views

urlpatterns = [
    path("", views.portal, name="portal"),
    path("keys/", views.keys, name="portal-keys"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="portal-key-revoke"),
    path("keys/<int:key_id>/rotate/", views.key_rotate, name="portal-key-rotate"),
]
