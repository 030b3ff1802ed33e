from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.db.models import Case, DecimalField, OuterRef, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Customer
from billing.admin import CustomerAdmin as BillingCustomerAdmin
from metering.models import UsageRecord
from metering.selectors import month_bounds

from .models import ReconciliationIssue
from .mrr import PAYING, customer_mrr


# Registered by accounts and re-registered by billing (plan changes), which sit below: the
# revenue columns are added here, where MRR is defined, by re-registering billing's admin with
# two annotated columns.
admin.site.unregister(Customer)


@admin.register(Customer)
class CustomerAdmin(BillingCustomerAdmin):
    list_display = ("company", "email", "plan", "status", "mrr", "calls_this_month", "trial_ends_at", "created_at")

    def get_queryset(self, request):
        start, _ = month_bounds(timezone.now().date())
        calls = (UsageRecord.objects.filter(customer=OuterRef("pk"), day__gte=start).order_by()
                 .values("customer").annotate(total=Sum("calls")).values("total"))
        money = DecimalField(max_digits=12, decimal_places=2)
        return super().get_queryset(request).annotate(
            month_calls=Coalesce(Subquery(calls), 0),
            # Only for sorting; the column shows customer_mrr, the dashboard's own rule.
            mrr_sort=Case(When(status__in=PAYING, then="terms__price"), default=Value(Decimal("0")), output_field=money),
        )

    @admin.display(description="MRR", ordering="mrr_sort")
    def mrr(self, customer: Customer) -> Decimal:
        return customer_mrr(customer, customer.terms)

    @admin.display(description="calls this month", ordering="month_calls")
    def calls_this_month(self, customer: Customer) -> str:
        return f"{customer.month_calls:,}"


@admin.register(ReconciliationIssue)
class ReconciliationIssueAdmin(admin.ModelAdmin):
    list_display = ("period", "customer", "source", "expected", "found", "invoice", "checked_at")
    list_filter = ("source", "period")
    search_fields = ("customer__company",)
    raw_id_fields = ("customer", "invoice")
    readonly_fields = ("customer", "period", "source", "expected", "found", "invoice", "created_at", "checked_at")

    def has_add_permission(self, request) -> bool:
        return False
