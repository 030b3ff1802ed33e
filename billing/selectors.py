"""Billing reads: the one invoice computation used by invoices, the portal and plan previews."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from accounts.models import Customer
from metering.models import UsageRecord
from plans.models import Plan

from .calculations import (
    DraftLine, InvoiceDraft, Timeline, ZERO, day_start, invoice_draft_build, period_bounds, period_of,
    timeline_from_changes,
)
from .models import Invoice, InvoiceLine, PlanChange

__all__ = [
    "DraftLine", "InvoiceDraft", "PlanChangePreview", "PlanSpan", "invoice_compute", "plan_change_preview",
    "plan_history", "plans_by_id",
]


def plans_by_id() -> dict[int, Plan]:
    return {plan.pk: plan for plan in Plan.objects.all()}


def customer_timeline(*, customer: Customer, before: datetime | None = None, upto: datetime | None = None) -> Timeline:
    """Changes made before `before` (a period's end) and no later than `upto` (now, for a projection)."""
    changes = PlanChange.objects.filter(customer=customer)
    if before is not None:
        changes = changes.filter(at__lt=before)
    if upto is not None:
        changes = changes.filter(at__lte=upto)
    rows = list(changes.order_by("at", "pk").values_list("at", "from_plan_id", "to_plan_id", "reason"))
    return timeline_from_changes(created_at=customer.created_at, current_plan_id=customer.plan_id, changes=rows)


def _daily_calls(customer_id: int, start: date, end: date) -> dict[date, int]:
    rows = (
        UsageRecord.objects.filter(customer_id=customer_id, day__gte=start, day__lt=end)
        .values("day").annotate(calls=Sum("calls")).values_list("day", "calls")
    )
    return {day: int(calls) for day, calls in rows}


def invoice_credits(*, customer_id: int, period: str) -> list[tuple[str, Decimal]]:
    """Credits staff put on the period's draft invoice (see services.invoice_credit_add)."""
    rows = InvoiceLine.objects.filter(
        invoice__customer_id=customer_id, invoice__period=period, invoice__status=Invoice.Status.DRAFT,
        kind=InvoiceLine.Kind.CREDIT,
    ).order_by("position", "pk")
    return [(row.description, row.unit_price) for row in rows]


def invoice_compute(
    *, customer: Customer, period: str, calls: int | None = None, as_of: datetime | None = None,
) -> InvoiceDraft:
    """The period's invoice as it stands: history up to `as_of` (default: now) and flushed usage.

    `calls` replaces the billable usage (the portal passes a run-rate projection). Days after
    `as_of` count as held on the plan held then, so mid-period this is the month's projection.
    """
    start, end = period_bounds(period)
    as_of = as_of or timezone.now()
    return invoice_draft_build(
        customer_id=customer.pk, period=period,
        timeline=customer_timeline(customer=customer, before=day_start(end), upto=as_of),
        trial_ends_at=customer.trial_ends_at, plans=plans_by_id(),
        daily_calls=_daily_calls(customer.pk, start, end) if calls is None else {},
        credits=invoice_credits(customer_id=customer.pk, period=period), calls=calls,
    )


@dataclass(frozen=True)
class PlanSpan:
    plan: Plan
    starts_at: datetime
    ends_at: datetime


def plan_history(*, customer: Customer, start: datetime, end: datetime) -> list[PlanSpan]:
    """The plans held over [start, end), one span per change (cancellations do not split spans)."""
    timeline = customer_timeline(customer=customer, before=end)
    plans = plans_by_id()
    start = max(start, customer.created_at)
    cuts = [at for at, _, _ in timeline.changes if start < at < end]
    spans: list[PlanSpan] = []
    for begin, finish in zip([start, *cuts], [*cuts, end]):
        plan = plans[timeline.plan_at(begin)]
        if spans and spans[-1].plan.pk == plan.pk:
            spans[-1] = PlanSpan(plan=plan, starts_at=spans[-1].starts_at, ends_at=finish)
        elif begin < finish:
            spans.append(PlanSpan(plan=plan, starts_at=begin, ends_at=finish))
    return spans


@dataclass(frozen=True)
class PlanChangePreview:
    plan: Plan
    period: str
    base_before: Decimal  # this period's base fees if nothing changes
    base_after: Decimal  # ... if the change happens at `at`
    difference: Decimal
    days_left: int  # days of the period from `at` on, the day of `at` included
    trial_kept: bool  # a trial continues on a paid plan; a plan without a price ends it


def plan_change_preview(*, customer: Customer, plan: Plan, at: datetime | None = None) -> PlanChangePreview:
    """What changing to `plan` at `at` (default now) does to this period's base fee, by day."""
    at = at or timezone.now()
    period = period_of(at)
    start, end = period_bounds(period)
    timeline = customer_timeline(customer=customer, upto=at)
    trial_kept = plan.is_paid
    changed = Timeline(
        created_at=timeline.created_at, initial_plan_id=timeline.initial_plan_id,
        changes=(*timeline.changes, (at, plan.pk, "customer")),
    )
    trial_after = customer.trial_ends_at if trial_kept or not customer.trial_ends_at else min(customer.trial_ends_at, at)
    plans = {**plans_by_id(), plan.pk: plan}
    before, after = (
        invoice_draft_build(customer_id=customer.pk, period=period, timeline=line, trial_ends_at=trial,
                            plans=plans, daily_calls={}, calls=0)
        for line, trial in ((timeline, customer.trial_ends_at), (changed, trial_after))
    )
    base_before, base_after = (
        sum((line.amount for line in draft.lines if line.kind == "base"), ZERO) for draft in (before, after)
    )
    return PlanChangePreview(
        plan=plan, period=period, base_before=base_before, base_after=base_after,
        difference=base_after - base_before, days_left=(end - at.date()).days,
        trial_kept=trial_kept and customer.status == Customer.Status.TRIAL,
    )


def invoices_for_customer(*, customer: Customer) -> list[Invoice]:
    return list(Invoice.objects.filter(customer=customer).exclude(status=Invoice.Status.DRAFT).order_by("-period"))


def usage_by_customer_day(*, customer_ids: list[int], start: date, end: date) -> dict[int, dict[date, int]]:
    """One query: every customer's calls per day over [start, end) (the month-close batch)."""
    rows = (
        UsageRecord.objects.filter(customer_id__in=customer_ids, day__gte=start, day__lt=end)
        .values("customer_id", "day").annotate(calls=Sum("calls")).values_list("customer_id", "day", "calls")
    )
    usage: dict[int, dict[date, int]] = defaultdict(dict)
    for customer_id, day, calls in rows:
        usage[customer_id][day] = int(calls)
    return usage


def changes_by_customer(*, customer_ids: list[int], before: datetime) -> dict[int, list[tuple]]:
    """One query: every customer's plan changes before `before`, oldest first."""
    rows = (
        PlanChange.objects.filter(customer_id__in=customer_ids, at__lt=before)
        .order_by("customer_id", "at", "pk").values_list("customer_id", "at", "from_plan_id", "to_plan_id", "reason")
    )
    changes: dict[int, list[tuple]] = defaultdict(list)
    for customer_id, *row in rows:
        changes[customer_id].append(tuple(row))
    return changes
