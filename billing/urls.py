from django.urls import path

from . import document_views, views

# Mounted at /portal/billing/ (config/urls.py); the Stripe webhook is mounted on its own.
urlpatterns = [
    path("", views.billing, name="billing"),
    path("card/", views.card, name="billing-card"),
    path("card/done/", views.card_done, name="billing-card-done"),
    path("card/remove/", views.card_remove_page, name="billing-card-remove"),
    path("plan/", views.plan_change, name="billing-plan"),
    path("cancel/", views.cancel, name="billing-cancel"),
    path("invoices/<int:invoice_id>/", views.invoice_detail, name="billing-invoice"),
    path("invoices/<int:invoice_id>/pdf/", document_views.invoice_pdf_download, name="billing-invoice-pdf"),
    path("details/", document_views.billing_details, name="billing-details"),
]
