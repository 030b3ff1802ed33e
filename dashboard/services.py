"""Nightly reconciliation: the Redis month counter, Postgres usage, the invoice and the charge
must tell the same story for every customer and period (DESIGN §5). Drifts are stored, never fixed
here: an issued invoice never changes, and which side is right is staff's call."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import Decimal

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Customer
from accounts.services import user_deactivate
from billing.models import Invoice, InvoiceLine, PaymentAttempt
from billing.services import customer_cancel
from metering import connection
from metering.models import UsageRecord
from metering.selectors import month_bounds, usage_redis_read

from .models import ReconciliationIssue
from .selectors import overage_amount

BATCH = 1000
Source = ReconciliationIssue.Source


@dataclass(frozen=True)
class Drift:
    customer_id: int
    source: str
    expected: Decimal
    found: Decimal
    invoice_id: int | None = None


@dataclass(frozen=True)
class ReconciliationResult:
    period: str
    customers: int
    drifts: tuple[Drift, ...]
    redis_checked: bool


def period_first_day(period: str) -> date:
    try:
        year, month = (int(part) for part in period.split("-"))
        return date(year, month, 1)
    except ValueError as exc:
        raise ValueError(f"Period must look like 2026-11, not {period!r}") from exc


def _usage_totals(first: date, end: date, customer_ids: list[int] | None = None) -> dict[int, int]:
    rows = UsageRecord.objects.filter(day__gte=first, day__lt=end)
    if customer_ids is not None:
        rows = rows.filter(customer_id__in=customer_ids)
    return dict(rows.values_list("customer_id").annotate(n=Sum("calls")).order_by())


def _redis_drifts(first: date, end: date, customer_ids: list[int]) -> list[Drift]:
    """Counter vs flushed + unflushed calls of the period; Redis read first (see usage_redis_read)."""
    drifts = []
    for i in range(0, len(customer_ids), BATCH):
        chunk = customer_ids[i:i + BATCH]
        redis_usage = usage_redis_read(customer_ids=chunk, day=first)
        totals = _usage_totals(first, end, chunk)
        for cid in chunk:
            held = redis_usage[cid]
            if held.month_counter is None:
                continue  # expired or lost (DESIGN §5: quotas then resume from Postgres)
            unflushed = sum(n for (_, _, day), n in held.unflushed.items() if first.isoformat() <= day < end.isoformat())
            expected = totals.get(cid, 0) + unflushed
            if expected != held.month_counter:
                drifts.append(Drift(cid, Source.REDIS, Decimal(expected), Decimal(held.month_counter)))
    return drifts


def _billable_totals(first: date, end: date) -> dict[int, int]:
    """Calls as the invoice counts them: days inside the customer's trial are free (the rule of
    selectors.first_billable_day, which billing applies)."""
    last_trial_day = TruncDate(ExpressionWrapper(F("customer__trial_ends_at") - timedelta(microseconds=1),
                                                 output_field=DateTimeField()), tzinfo=dt_timezone.utc)
    billable = (Q(customer__trial_ends_at__isnull=True) | Q(customer__trial_ends_at__lte=F("customer__created_at"))
                | Q(day__gt=last_trial_day))
    rows = UsageRecord.objects.filter(day__gte=first, day__lt=end).filter(billable)
    return dict(rows.values_list("customer_id").annotate(n=Sum("calls")).order_by())


def _invoice_drifts(period: str, first: date, end: date) -> list[Drift]:
    totals = _billable_totals(first, end)
    invoices = (Invoice.objects.filter(period=period).exclude(status=Invoice.Status.VOID).select_related("plan")
                .annotate(overage=Sum("lines__amount", filter=Q(lines__kind=InvoiceLine.Kind.OVERAGE))))
    drifts = []
    for invoice in invoices:
        calls = totals.get(invoice.customer_id, 0)
        if invoice.calls != calls:
            drifts.append(Drift(invoice.customer_id, Source.INVOICE_CALLS, Decimal(calls), Decimal(invoice.calls), invoice.pk))
        if invoice.plan is not None:
            expected = overage_amount(plan=invoice.plan, calls=calls)
            found = invoice.overage or Decimal("0.00")
            if expected != found:
                drifts.append(Drift(invoice.customer_id, Source.INVOICE_OVERAGE, expected, found, invoice.pk))
    return drifts


def _charge_drifts(period: str) -> list[Drift]:
    """Paid invoices against what their successful charges took (a bank transfer has none)."""
    charged = (PaymentAttempt.objects.filter(invoice__period=period, invoice__status=Invoice.Status.PAID,
                                             status=PaymentAttempt.Status.SUCCEEDED)
               .values_list("invoice_id", "invoice__customer_id", "invoice__total").annotate(s=Sum("amount")).order_by())
    return [Drift(cid, Source.STRIPE, total, paid, invoice_id)
            for invoice_id, cid, total, paid in charged if paid != total]


def reconciliation_run(*, period: str, now: datetime | None = None) -> ReconciliationResult:
    now = now or timezone.now()
    first = period_first_day(period)
    end = month_bounds(first)[1]
    customer_ids = list(Customer.objects.filter(created_at__lt=datetime.combine(end, time.min, tzinfo=dt_timezone.utc))
                        .order_by("pk").values_list("pk", flat=True))
    drifts, redis_checked = [], True
    try:
        drifts += _redis_drifts(first, end, customer_ids)
    except connection.UNAVAILABLE:
        redis_checked = False
    if datetime.combine(end, time.min, tzinfo=dt_timezone.utc) <= now:
        drifts += _invoice_drifts(period, first, end) + _charge_drifts(period)
    _issues_store(period=period, drifts=drifts, now=now, redis_checked=redis_checked)
    return ReconciliationResult(period, len(customer_ids), tuple(drifts), redis_checked)


@transaction.atomic
def _issues_store(*, period: str, drifts: list[Drift], now: datetime, redis_checked: bool) -> None:
    """Upsert today's drifts; drop the period's rows that agree again (Redis rows only if it was read)."""
    stale = ReconciliationIssue.objects.filter(period=period)
    if not redis_checked:
        stale = stale.exclude(source=Source.REDIS)
    stale.filter(~_any_of(drifts)).delete()
    for drift in drifts:
        ReconciliationIssue.objects.update_or_create(
            customer_id=drift.customer_id, period=period, source=drift.source,
            defaults={"expected": drift.expected, "found": drift.found, "invoice_id": drift.invoice_id, "checked_at": now},
            create_defaults={"expected": drift.expected, "found": drift.found, "invoice_id": drift.invoice_id,
                             "checked_at": now, "created_at": now},
        )


def _any_of(drifts: list[Drift]) -> Q:
    q = Q(pk__in=[])
    for drift in drifts:
        q |= Q(customer_id=drift.customer_id, source=drift.source)
    return q


@dataclass(frozen=True)
class ClosedAccount:
    customer: Customer
    final_invoice: Invoice | None


def account_close(*, customer: Customer) -> ClosedAccount:
    """Cancel the subscription (billing issues the final invoice and keeps every invoice), then
    turn the login off. Billing comes first: if it refuses, the customer can still sign in."""
    invoice = customer_cancel(customer=customer)
    user_deactivate(user=customer.owner)
    customer.refresh_from_db()
    return ClosedAccount(customer=customer, final_invoice=invoice)
