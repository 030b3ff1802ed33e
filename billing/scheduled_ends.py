"""Ending a subscription at the end of its period (README "Customer portal").

A scheduled end is a PlanChange dated at the end of the period: "cancelled" (the subscription
ends) or "customer" to the default plan (a paid plan whose card was removed). Rating reads
history, so the period it ends is billed in full and the next one by the new state; the hourly
beat (scheduled_ends_due_apply) makes the customer row agree once the time has come.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from accounts.models import Customer
from core.periods import day_start, period_bounds, period_of
from plans.models import Plan
from plans.services import terms_current

from . import signals
from .models import PlanChange
from .signals import send_on_commit
from .subscriptions import _customer_lock


@dataclass(frozen=True)
class ScheduledEnd:
    at: datetime
    cancels: bool  # False: moves to `plan` instead
    plan: Plan

    @property
    def last_day(self) -> date:
        """The last day served as now (the end is at 00:00 UTC of the next)."""
        return (self.at - timedelta(microseconds=1)).date()


def _end_at(customer: Customer, now: datetime) -> datetime:
    """The end of the current period; a trial ending sooner ends there."""
    end = day_start(period_bounds(period_of(now))[1])
    if customer.status == Customer.Status.TRIAL and customer.trial_ends_at and now < customer.trial_ends_at < end:
        return customer.trial_ends_at
    return end


def _scheduled(customer: Customer, now: datetime):
    future = PlanChange.objects.filter(customer=customer, at__gt=now).select_related("to_plan").order_by("at", "pk")
    return (future.filter(reason=PlanChange.Reason.CANCELLED).first()
            or future.filter(reason=PlanChange.Reason.CUSTOMER).exclude(to_plan_id=customer.plan_id).first())


def scheduled_end(*, customer: Customer) -> ScheduledEnd | None:
    """The end scheduled for this customer, if any: a cancellation first, else a move off its plan."""
    change = _scheduled(customer, timezone.now())
    if change is None:
        return None
    return ScheduledEnd(at=change.at, cancels=change.reason == PlanChange.Reason.CANCELLED, plan=change.to_plan)


def cancel_end_preview(*, customer: Customer) -> ScheduledEnd:
    """When a cancellation at the period's end would take effect, for the cancel page."""
    return ScheduledEnd(at=_end_at(customer, timezone.now()), cancels=True, plan=customer.plan)


@transaction.atomic
def customer_cancel_at_period_end(*, customer: Customer) -> ScheduledEnd:
    """Cancel at the end of the period: everything works (and is billed) as now until then.
    Asking again keeps the one already scheduled."""
    locked = _customer_lock(customer)
    if locked.status == Customer.Status.CANCELLED:
        raise ValidationError("This account is already cancelled.", code="cancelled")
    now = timezone.now()
    existing = PlanChange.objects.filter(customer=locked, at__gt=now, reason=PlanChange.Reason.CANCELLED).first()
    if existing is None:
        existing = PlanChange.objects.create(
            customer=locked, from_plan_id=locked.plan_id, to_plan_id=locked.plan_id, terms=locked.terms,
            at=_end_at(locked, now), reason=PlanChange.Reason.CANCELLED,
        )
    return ScheduledEnd(at=existing.at, cancels=True, plan=locked.plan)


@transaction.atomic
def cancel_undo(*, customer: Customer) -> None:
    """Keep the subscription: the cancellation scheduled for the period's end is dropped."""
    locked = _customer_lock(customer)
    scheduled = PlanChange.objects.filter(customer=locked, at__gt=timezone.now(), reason=PlanChange.Reason.CANCELLED)
    if locked.status == Customer.Status.CANCELLED or not scheduled.exists():
        raise ValidationError("No cancellation is scheduled for this account.", code="not_scheduled")
    scheduled.delete()


def _card_needed(customer: Customer) -> bool:
    """The card rule of a subscription: paid terms outside a trial charge a card each month (a trial
    without one already ends on the default plan, see trial_end)."""
    return customer.status in (Customer.Status.ACTIVE, Customer.Status.PAST_DUE) and (
        customer.terms or customer.plan).is_paid


def card_removal_preview(*, customer: Customer) -> ScheduledEnd | None:
    """What removing the card would schedule (None: nothing, the plan needs no card)."""
    if not _card_needed(customer):
        return None
    return scheduled_end(customer=customer) or _card_removal_end(customer, timezone.now())


def _card_removal_end(customer: Customer, now: datetime) -> ScheduledEnd:
    default = Plan.objects.filter(is_default=True).first()
    if default is None or default.pk == customer.plan_id or terms_current(plan=default).is_paid:
        return ScheduledEnd(at=_end_at(customer, now), cancels=True, plan=customer.plan)
    return ScheduledEnd(at=_end_at(customer, now), cancels=False, plan=default)


def card_removed_schedule(*, customer: Customer) -> ScheduledEnd | None:
    """The card is gone: a plan that needs one ends at the period's end (to the default plan, or
    cancelled when there is no free one). Called by cards.card_remove, in its transaction."""
    locked = _customer_lock(customer)
    if not _card_needed(locked):
        return None
    now = timezone.now()
    existing = scheduled_end(customer=locked)
    if existing is not None:
        return existing
    end = _card_removal_end(locked, now)
    if end.cancels:
        PlanChange.objects.create(customer=locked, from_plan_id=locked.plan_id, to_plan_id=locked.plan_id,
                                  terms=locked.terms, at=end.at, reason=PlanChange.Reason.CANCELLED)
    else:
        PlanChange.objects.create(customer=locked, from_plan_id=locked.plan_id, to_plan=end.plan,
                                  terms=terms_current(plan=end.plan), at=end.at, reason=PlanChange.Reason.CUSTOMER)
    return end


def card_added_unschedule(*, customer: Customer) -> int:
    """A card is back on file: the move off a paid plan scheduled for want of one is dropped
    (a cancellation the customer asked for stays). Called by cards.card_save, in its transaction."""
    deleted, _ = PlanChange.objects.filter(
        customer=customer, at__gt=timezone.now(), reason=PlanChange.Reason.CUSTOMER).delete()
    return deleted


def scheduled_ends_due_apply(*, now: datetime | None = None) -> int:
    """Beat, hourly (with the terms moves): scheduled ends whose time has come take effect on the
    customer row. Safe to repeat: an end applied, or overtaken by a later change, is left alone."""
    now = now or timezone.now()
    later = PlanChange.objects.filter(customer=OuterRef("customer"), at__lte=now).filter(
        Q(at__gt=OuterRef("at")) | Q(at=OuterRef("at"), pk__gt=OuterRef("pk")))
    reactivated = PlanChange.objects.filter(customer=OuterRef("customer"), at__gt=OuterRef("at"), at__lte=now,
                                            reason=PlanChange.Reason.REACTIVATED)
    cancels = (PlanChange.objects.filter(reason=PlanChange.Reason.CANCELLED, at__lte=now)
               .exclude(customer__status=Customer.Status.CANCELLED).exclude(Exists(reactivated)))
    moves = (PlanChange.objects.filter(reason=PlanChange.Reason.CUSTOMER, at__lte=now)
             .exclude(customer__status=Customer.Status.CANCELLED).exclude(customer__plan=F("to_plan"))
             .exclude(Exists(later)))
    due = {*cancels.values_list("pk", flat=True), *moves.values_list("pk", flat=True)}
    return sum(_scheduled_end_apply(change_id=pk) for pk in sorted(due))


@transaction.atomic
def _scheduled_end_apply(*, change_id: int) -> bool:
    change = PlanChange.objects.select_related("to_plan", "terms").get(pk=change_id)
    locked = _customer_lock(Customer(pk=change.customer_id))
    if locked.status == Customer.Status.CANCELLED:
        return False
    if change.reason == PlanChange.Reason.CANCELLED:
        locked.status = Customer.Status.CANCELLED
        if locked.trial_ends_at and locked.trial_ends_at > change.at:
            locked.trial_ends_at = change.at
        locked.save(update_fields=["status", "trial_ends_at"])  # the API answers 403 from the next call
        return True
    if locked.plan_id == change.to_plan_id:
        return False
    locked.plan, locked.terms = change.to_plan, change.terms
    locked.save(update_fields=["plan", "terms"])  # post_save raises config_version: new limits on the next call
    send_on_commit(signals.plan_changed, customer=locked, change=change)
    return True
