"""Nightly reconciliation: the Redis month counter, Postgres usage, the invoice and the charge
must tell the same story for every customer and period (README "The metered API"). Drifts are stored, never fixed
here: an issued invoice never changes, and which side is right is staff's call."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import Customer
from accounts.services import user_deactivate
from accounts.team import team_disband
from billing.models import Invoice, InvoiceLine, PaymentAttempt, PlanChange
from billing.payment_events import payment_mismatches
from billing.subscriptions import customer_cancel
from metering import connection
from metering.models import UsageRecord
from metering.selectors import month_bounds, usage_redis_read
from plans.models import Terms

from .models import ReconciliationIssue

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
                continue  # expired or lost (README "The metered API": quotas then resume from Postgres)
            unflushed = sum(n for (_, _, day), n in held.unflushed.items() if first.isoformat() <= day < end.isoformat())
            expected = totals.get(cid, 0) + unflushed
            if expected != held.month_counter:
                drifts.append(Drift(cid, Source.REDIS, Decimal(expected), Decimal(held.month_counter)))
    return drifts


# ---------------------------------------------------------------- the invoice, recomputed from the rule's words
# Deliberately not billing's rating code: a check that calls the function under test agrees
# with every mistake it makes (the audit of issue 13 found 27 wrong invoices this way). These
# few lines read README "Billing" again, on the raw tables.

def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=dt_timezone.utc)


def _days(first: date, end: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((end - first).days)]


@dataclass(frozen=True)
class _Account:
    """A customer as the rule reads it: signup, trial end, and its changes made before the period's end."""

    created_at: datetime
    trial_started_at: datetime | None  # None: at signup
    trial_ends_at: datetime | None
    signup_terms_id: int | None
    changes: tuple[tuple[datetime, int, str], ...]  # (at, terms id, reason), oldest first

    def start_of(self, day: date) -> datetime:
        """A day's start; on the signup day, the signup."""
        return max(_midnight(day), self.created_at)

    def terms_at(self, moment: datetime) -> int | None:
        held = self.signup_terms_id
        for at, terms_id, _ in self.changes:
            if at <= moment:
                held = terms_id
        return held

    def cancelled_at(self, moment: datetime) -> bool:
        cancelled = False
        for at, _, reason in self.changes:
            if at <= moment and reason in (PlanChange.Reason.CANCELLED, PlanChange.Reason.REACTIVATED):
                cancelled = reason == PlanChange.Reason.CANCELLED
        return cancelled

    def billed(self, day: date) -> bool:
        """The customer existed during the day and was not cancelled at its start."""
        return self.created_at < _midnight(day + timedelta(days=1)) and not self.cancelled_at(self.start_of(day))

    def on_trial(self, day: date) -> bool:
        """The day's start falls inside the trial (which began at signup, or later on a move off Free)."""
        if self.trial_ends_at is None:
            return False
        return (self.trial_started_at or self.created_at) <= self.start_of(day) < self.trial_ends_at


def _accounts(customer_ids: list[int], end: date) -> dict[int, _Account]:
    changes: dict[int, list[tuple]] = defaultdict(list)
    rows = (PlanChange.objects.filter(customer_id__in=customer_ids, at__lt=_midnight(end))
            .order_by("customer_id", "at", "pk").values_list("customer_id", "at", "terms_id", "reason"))
    for customer_id, *change in rows:
        changes[customer_id].append(tuple(change))
    customers = Customer.objects.filter(pk__in=customer_ids).values_list(
        "pk", "created_at", "trial_started_at", "trial_ends_at", "signup_terms_id")
    return {pk: _Account(created, trial_from, trial_end, signup, tuple(changes[pk]))
            for pk, created, trial_from, trial_end, signup in customers}


def _daily_usage(first: date, end: date, customer_ids: list[int]) -> dict[int, dict[date, int]]:
    rows = (UsageRecord.objects.filter(customer_id__in=customer_ids, day__gte=first, day__lt=end)
            .values_list("customer_id", "day").annotate(n=Sum("calls")).order_by())
    usage: dict[int, dict[date, int]] = defaultdict(dict)
    for customer_id, day, calls in rows:
        usage[customer_id][day] = calls
    return usage


def _overage_by_rule(terms: Terms, days: int, days_in_month: int, calls: int) -> Decimal:
    """Calls made on the run's days beyond its allowance (included × days ÷ days in the month,
    half-up to a whole call), times the run's overage price, half-up to cents; none on a hard cap."""
    if terms.hard_cap:
        return Decimal("0.00")
    allowance = (Decimal(terms.included_calls) * days / days_in_month).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    beyond = max(Decimal(0), calls - allowance)
    return (beyond * terms.overage_price).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class _StoredLine:
    kind: str
    starts_on: date | None
    ends_on: date | None
    amount: Decimal


def _invoice_runs(lines: list[_StoredLine], account: _Account, first: date, end: date) -> list[list[date]]:
    """The invoice's runs: each dated base line's days less trial days (a trial's line keeps none).
    An invoice written before lines had dates counts every billed day of the period as one run."""
    spans = [_days(line.starts_on, line.ends_on) for line in lines if line.kind == InvoiceLine.Kind.BASE and line.starts_on]
    if not spans:
        spans = [[day for day in _days(first, end) if account.billed(day)]]
    runs = [[day for day in span if not account.on_trial(day)] for span in spans]
    return [run for run in runs if run]


def _invoice_drifts(period: str, first: date, end: date) -> list[Drift]:
    """Each invoice's calls against the usage of its run days, and each run's overage line
    against the rule applied to that usage and the terms held on the run's first day."""
    invoices = list(Invoice.objects.filter(period=period).exclude(status=Invoice.Status.VOID)
                    .order_by("pk").values_list("pk", "customer_id", "calls"))
    drifts = []
    for i in range(0, len(invoices), BATCH):
        drifts += _invoice_batch_drifts(invoices[i:i + BATCH], first, end)
    return drifts


def _invoice_batch_drifts(invoices: list[tuple[int, int, int]], first: date, end: date) -> list[Drift]:
    customer_ids = [customer_id for _, customer_id, _ in invoices]
    accounts, usage = _accounts(customer_ids, end), _daily_usage(first, end, customer_ids)
    lines: dict[int, list[_StoredLine]] = defaultdict(list)
    rows = (InvoiceLine.objects.filter(invoice_id__in=[pk for pk, _, _ in invoices])
            .exclude(kind=InvoiceLine.Kind.CREDIT).values_list("invoice_id", "kind", "starts_on", "ends_on", "amount"))
    for invoice_id, *line in rows:
        lines[invoice_id].append(_StoredLine(*line))
    held = {t for a in accounts.values() for t in (a.signup_terms_id, *(c[1] for c in a.changes))}
    terms = Terms.objects.in_bulk([t for t in held if t is not None])
    drifts = []
    for pk, customer_id, stored_calls in invoices:
        account, calls = accounts[customer_id], usage.get(customer_id, {})
        runs = _invoice_runs(lines[pk], account, first, end)
        billable = sum(calls.get(day, 0) for run in runs for day in run)
        if stored_calls != billable:
            drifts.append(Drift(customer_id, Source.INVOICE_CALLS, Decimal(billable), Decimal(stored_calls), pk))
        overage = _overage_drift(lines[pk], runs, account, terms, calls, (end - first).days)
        if overage is not None:
            drifts.append(Drift(customer_id, Source.INVOICE_OVERAGE, *overage, pk))
    return drifts


def _overage_drift(lines: list[_StoredLine], runs: list[list[date]], account: _Account, terms: dict[int, Terms],
                   calls: dict[date, int], days_in_month: int) -> tuple[Decimal, Decimal] | None:
    """(expected, found) overage of the invoice when any run's overage line is not what the rule gives."""
    found_by_run: dict[date | None, Decimal] = defaultdict(Decimal)
    for line in lines:
        if line.kind == InvoiceLine.Kind.OVERAGE:
            found_by_run[line.starts_on] += line.amount
    expected_by_run: dict[date | None, Decimal] = {}
    for run in runs:
        held = terms.get(account.terms_at(account.start_of(run[0])))
        if held is not None:
            expected_by_run[run[0]] = _overage_by_rule(held, len(run), days_in_month, sum(calls.get(d, 0) for d in run))
    expected, found = sum(expected_by_run.values(), Decimal("0.00")), sum(found_by_run.values(), Decimal("0.00"))
    if None in found_by_run:  # lines written before they had dates: only the total can be compared
        return None if expected == found else (expected, found)
    if all(found_by_run.get(key, 0) == expected_by_run.get(key, 0) for key in {*found_by_run, *expected_by_run}):
        return None
    return expected, found


def _missing_invoice_drifts(period: str, first: date, end: date, customer_ids: list[int]) -> list[Drift]:
    """A closed period with billed days or usage and no invoice (void ones count: a voided
    invoice was a decision). Expected one invoice, found none."""
    invoiced = set(Invoice.objects.filter(period=period).values_list("customer_id", flat=True))
    drifts = []
    for i in range(0, len(customer_ids), BATCH):
        chunk = [cid for cid in customer_ids[i:i + BATCH] if cid not in invoiced]
        if not chunk:
            continue
        used, accounts = _usage_totals(first, end, chunk), _accounts(chunk, end)
        for cid in chunk:
            if used.get(cid) or any(accounts[cid].billed(day) for day in _days(first, end)):
                drifts.append(Drift(cid, Source.MISSING_INVOICE, Decimal(1), Decimal(0)))
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
        drifts += (_invoice_drifts(period, first, end) + _missing_invoice_drifts(period, first, end, customer_ids)
                   + _charge_drifts(period))
    drifts += _payment_mismatch_drifts(first, end)
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
    team_disband(customer=customer)
    customer.refresh_from_db()
    return ClosedAccount(customer=customer, final_invoice=invoice)


def _payment_mismatch_drifts(first: date, end: date) -> list[Drift]:
    """Stripe payment events received in the period that matched no attempt on record (billing
    kept them and settled nothing): what our attempts asked against what Stripe's events said."""
    start, stop = (datetime.combine(day, time.min, tzinfo=dt_timezone.utc) for day in (first, end))
    return [Drift(m.customer_id, Source.PAYMENT_MISMATCH, m.expected, m.found, m.invoice_id)
            for m in payment_mismatches(start=start, end=stop)]
