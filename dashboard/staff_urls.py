from django.urls import path

from . import staff_views

urlpatterns = [
    path("", staff_views.revenue_dashboard, name="staff-dashboard"),
    path("customers.csv", staff_views.customers_csv, name="staff-customers-csv"),
]
