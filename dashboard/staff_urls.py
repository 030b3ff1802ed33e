from django.urls import path

from . import staff_views

urlpatterns = [
    path("", staff_views.revenue_dashboard, name="staff-dashboard"),
    path("customers.csv", staff_views.customers_csv, name="staff-customers-csv"),
    path("customers/", staff_views.customers, name="staff-customers"),
    path("customers/<int:customer_id>/", staff_views.customer_detail, name="staff-customer"),
    path("customers/<int:customer_id>/<slug:action>/", staff_views.customer_action, name="staff-customer-action"),
    path("issues/<int:issue_id>/resolve/", staff_views.issue_resolve, name="staff-issue-resolve"),
]
