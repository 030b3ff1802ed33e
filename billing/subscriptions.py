"""Subscriptions: plan changes, cancellation and trials (README "Billing").

Every path that moves a customer to another plan goes through `plan_change`, which records the
terms the change starts; the invoice of a period is rated from those records alone.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

import outbox
from accounts import tasks as accounts_tasks
from accounts.models import Customer
from accounts.services import trial_card_claim, trial_claim, trial_taken
from core.periods import day_start, period_bounds, period_of
from metering.models import UsageLimits
from metering.services import customer_config_bump, usage_flush
from plans.models import Plan, Product, Terms
from plans.services import terms_current

from . import signals, tasks
from .invoicing import invoice_generate, invoice_issue
from .models import Invoice, PaymentMethod, PlanChange, TrialNotice
from .selectors import plan_change_preview
from .signals import send_on_commit

logger = logging.getLogger(__name__)

_SYSTEM_REASONS = {PlanChange.Reason.STAFF, PlanChange.Reason.TRIAL_ENDED}


def _customer_lock(customer: Customer) -> Customer:
    """The customer's row, locked until the transaction ends, read after the lock was granted.

    The lock is taken on the bare row, never on a join: a FOR UPDATE that waited for another
    plan change re-checks the updated row against the plan row it joined before waiting, finds
    the new plan id no longer matches it and returns no row (parallel changes raised DoesNotExist).
    Read after the lock, the row and its plan, terms and owner are the committed ones.
    """
    Customer.objects.select_for_update().filter(pk=customer.pk).values_list("pk", flat=True).get()
    return Customer.objects.select_related("plan", "terms", "owner").get(pk=customer.pk)


def plan_change(*, customer: Customer, plan: Plan, by_staff: bool = False) -> PlanChange:
    """Move the customer to `plan` now. The API sees the new limits on its next call; keys keep working.

    - During a trial a paid plan keeps the trial until it ends; a plan without a price ends it.
    - From Free (terms without a price) to a paid plan there must be something to charge: with a
      card on file the move is immediate; without one it starts the plan's trial if the person
      never had one (accounts.services.trial_taken), else it is refused until a card is added.
    - `by_staff` (staff invoicing by bank transfer) records "changed by staff", may pick a hidden
      plan, waives the card rule and never starts a trial.
    """
    reason = PlanChange.Reason.STAFF if by_staff else PlanChange.Reason.CUSTOMER
    return _plan_change(customer=customer, plan=plan, reason=reason)


def plan_change_check(*, customer: Customer, plan: Plan, by_staff: bool = False) -> bool:
    """Raise the ValidationError plan_change would raise now, writing nothing (forms check with
    it); True when the change would start the plan's trial."""
    fresh = Customer.objects.select_related("plan", "terms", "owner").get(pk=customer.pk)
    reason = PlanChange.Reason.STAFF if by_staff else PlanChange.Reason.CUSTOMER
    return _trial_starts(fresh, _target(fresh, plan, reason), reason)


@transaction.atomic
def _plan_change(*, customer: Customer, plan: Plan, reason: str) -> PlanChange:
    locked = _customer_lock(customer)
    target = _target(locked, plan, reason)
    trial = _trial_starts(locked, target, reason)
    if trial and trial_claim(customer=locked, email=locked.email) is None:
        # Another account of the same mailbox took the trial since trial_taken looked.
        raise _card_first(target, trial_used=True)
    now = timezone.now()
    terms = terms_current(plan=target)
    _spend_cap_check(locked, target, terms, now)
    # A move to new terms that staff scheduled for a later period start would undo this change.
    PlanChange.objects.filter(customer=locked, at__gt=now, reason=PlanChange.Reason.TERMS_UPDATED).delete()
    change = PlanChange.objects.create(
        customer=locked, from_plan_id=locked.plan_id, to_plan=target, terms=terms, at=now, reason=reason,
    )
    locked.plan, locked.terms = target, terms
    fields = ["plan", "terms"]
    if trial:
        locked.status, locked.trial_started_at = Customer.Status.TRIAL, now
        locked.trial_ends_at = now + timedelta(days=target.trial_days)
        fields += ["status", "trial_started_at", "trial_ends_at"]
    elif locked.status == Customer.Status.TRIAL and not target.is_paid:
        locked.status, locked.trial_ends_at = Customer.Status.ACTIVE, min(locked.trial_ends_at or now, now)
        fields += ["status", "trial_ends_at"]
    locked.save(update_fields=fields)  # post_save raises config_version: new limits on the next call
    _sync(customer, locked, fields)
    send_on_commit(signals.plan_changed, customer=locked, change=change)
    return change


def _spend_cap_check(customer: Customer, plan: Plan, terms: Terms, now: datetime) -> None:
    """A hard-stop spend cap bounds the month: a change whose days to come (and the overage
    already owed) would take the month past it is refused until the cap is raised (README "Billing")."""
    cap = UsageLimits.objects.filter(customer_id=customer.pk).values_list("spend_cap", flat=True).first()
    if cap is None:
        return
    owed = plan_change_preview(customer=customer, plan=plan, terms=terms, at=now).owed_after
    if owed > cap:
        raise ValidationError({"plan": ValidationError(
            f"On {plan.name} this month would come to ${owed:,}, above your ${cap:,} spend cap. "
            "Raise the cap on your settings page first.", code="spend_cap")})


def _target(customer: Customer, plan: Plan, reason: str) -> Plan:
    """The plan asked for, if this customer may move to it at all."""
    target = Plan.objects.filter(pk=getattr(plan, "pk", None)).first()
    if target is None:
        raise ValidationError({"plan": "Choose one of the plans on offer."})
    if customer.status == Customer.Status.CANCELLED:
        raise ValidationError({"plan": "This account is cancelled."})
    if target.pk == customer.plan_id:
        raise ValidationError({"plan": f"You are already on the {target.name} plan."})
    if not target.is_public and reason not in _SYSTEM_REASONS:
        raise ValidationError({"plan": "Choose one of the plans on offer."})
    return target


def _trial_starts(customer: Customer, target: Plan, reason: str) -> bool:
    """The card rule of a move from Free to a paid plan: True when the move starts a trial.

    Raises when the customer must add a card first. Moves by staff or by the system, moves to a
    plan without a price and moves from paid terms are not concerned.
    """
    if reason in _SYSTEM_REASONS or not target.is_paid or (customer.terms or customer.plan).is_paid:
        return False
    if PaymentMethod.objects.filter(customer=customer).exists():
        return False
    trial_used = trial_taken(customer=customer)
    # A past-due account owes money already: no trial for it, a card first.
    if target.has_trial and not trial_used and customer.status == Customer.Status.ACTIVE:
        return True
    raise _card_first(target, trial_used=trial_used)


def _card_first(target: Plan, *, trial_used: bool) -> ValidationError:
    why = "You have had your free trial, so a" if trial_used else "A"
    message = f"{why}dd a card on the billing page first, then switch to {target.name}."
    return ValidationError({"plan": ValidationError(message, code="card_required")})


def _sync(stale: Customer, fresh: Customer, fields: list[str]) -> None:
    """Let the caller's object see what was written under the lock."""
    for field in fields:
        setattr(stale, field, getattr(fresh, field))


def customer_cancel(*, customer: Customer) -> Invoice | None:
    """Cancel now (the API answers 403) and issue the final invoice for the partial period.

    A second cancel is a no-op and returns None.
    """
    _usage_flush_quietly()
    with transaction.atomic():
        locked = _customer_lock(customer)
        if locked.status == Customer.Status.CANCELLED:
            return None
        now = timezone.now()
        # Whatever was scheduled (an end at the period's end, a move to Free, new terms) is moot now.
        PlanChange.objects.filter(customer=locked, at__gt=now).delete()
        PlanChange.objects.create(
            customer=locked, from_plan_id=locked.plan_id, to_plan_id=locked.plan_id, at=now,
            reason=PlanChange.Reason.CANCELLED,
        )
        locked.status = Customer.Status.CANCELLED
        if locked.trial_ends_at and locked.trial_ends_at > now:
            locked.trial_ends_at = now
        locked.save(update_fields=["status", "trial_ends_at"])
        _sync(customer, locked, ["status", "trial_ends_at"])
        invoice = invoice_generate(customer=locked, period=period_of(now), final=True)
        return invoice_issue(invoice=invoice)


def _usage_flush_quietly() -> None:
    """Calls still counted only in Redis belong on the final invoice; without Redis, bill what we have."""
    try:
        usage_flush()
    except Exception:  # noqa: BLE001 - Redis down must not block a cancellation
        logger.warning("usage flush before a cancellation failed; the final invoice uses flushed usage", exc_info=True)


# --- trials ---

def _trial_notice(customer: Customer, kind: str, signal) -> bool:
    """Record the notice; only the run that records it sends the email (hourly runs repeat)."""

    _, created = TrialNotice.objects.get_or_create(customer=customer, kind=kind)
    if created:
        outbox.enqueue(tasks.trial_email_task, customer_id=customer.pk, kind=kind)
        send_on_commit(signal, customer=customer)
    return created


@transaction.atomic
def trial_remind(*, customer: Customer) -> bool:
    locked = _customer_lock(customer)
    if locked.status != Customer.Status.TRIAL:
        return False
    return _trial_notice(locked, TrialNotice.Kind.ENDING, signals.trial_ending)


@transaction.atomic
def trial_end(*, customer: Customer) -> Customer:
    """A trial past its end: active with a card on file, else onto the default plan (active too)."""
    locked = _customer_lock(customer)
    if locked.status != Customer.Status.TRIAL or (locked.trial_ends_at and locked.trial_ends_at > timezone.now()):
        return locked
    default = Plan.objects.filter(is_default=True).first()
    if not PaymentMethod.objects.filter(customer=locked).exists() and default and default.pk != locked.plan_id:
        _plan_change(customer=locked, plan=default, reason=PlanChange.Reason.TRIAL_ENDED)
        locked = _customer_lock(locked)
    if locked.status == Customer.Status.TRIAL:
        locked.status = Customer.Status.ACTIVE
        locked.save(update_fields=["status"])
    _trial_notice(locked, TrialNotice.Kind.ENDED, signals.trial_ended)
    return locked



@transaction.atomic
def trial_card_check(*, customer: Customer, method: PaymentMethod) -> bool:
    """One trial per card (README "Billing"), when a card is saved; True when it ended a trial now.

    The rule, by Stripe's fingerprint of the card number (the same card on two accounts has the
    same one; a card without one is not checked):
    - a customer who has had a trial (or whose mailbox has) claims the card, unless an earlier
      account did: the card then stands for that trial wherever it shows up again;
    - a card already claimed by another account (even a deleted one) ends this customer's
      running trial at once: it stays on its plan, active, billed from now, and gets the
      trial-ended email;
    - a customer who never had a trial claims nothing: a card that only ever paid leaves the
      trials of other accounts alone.
    Called by cards.card_save, in its transaction.
    """
    if not method.fingerprint:
        return False
    locked = _customer_lock(customer)
    if not trial_taken(customer=locked):
        return False
    claim = trial_card_claim(customer=locked, fingerprint=method.fingerprint)
    if claim.customer_id == locked.pk or locked.status != Customer.Status.TRIAL:
        return False
    locked.status = Customer.Status.ACTIVE
    locked.trial_ends_at = min(locked.trial_ends_at or timezone.now(), timezone.now())
    locked.save(update_fields=["status", "trial_ends_at"])
    _sync(customer, locked, ["status", "trial_ends_at"])
    _trial_notice(locked, TrialNotice.Kind.ENDED, signals.trial_ended)
    return True


# --- moving a plan's customers to its current terms ---

def plan_terms_move_schedule(*, plan: Plan) -> list[PlanChange]:
    """Staff edited `plan`: move its customers to the plan's current terms from the next period start.

    Each customer still on older terms gets a TERMS_UPDATED change at 00:00 UTC on the 1st of
    next month and an email notice; until then (and for every day before it) its terms stay as
    they are (README "Billing": terms are snapshots). Running it again schedules and sends nothing new; after
    a further edit it replaces the scheduled move with one to the newer terms.
    """
    terms = terms_current(plan=plan)
    starts_at = day_start(period_bounds(period_of(timezone.now()))[1])
    candidates = (Customer.objects.filter(plan=plan).exclude(status=Customer.Status.CANCELLED)
                  .exclude(terms=terms).order_by("pk").values_list("pk", flat=True))
    moves = (_terms_move_schedule_one(customer_id=pk, terms=terms, starts_at=starts_at) for pk in candidates)
    return [move for move in moves if move is not None]


@transaction.atomic
def _terms_move_schedule_one(*, customer_id: int, terms: Terms, starts_at: datetime) -> PlanChange | None:
    locked = _customer_lock(Customer(pk=customer_id))
    if locked.plan_id != terms.plan_id or locked.status == Customer.Status.CANCELLED:
        return None  # changed plan or cancelled since the list was read
    if locked.terms is None or locked.terms.values() == terms.values():
        return None  # an older snapshot of the same values: nothing would change
    ending = (PlanChange.Reason.CANCELLED, PlanChange.Reason.CUSTOMER)
    if PlanChange.objects.filter(customer=locked, at__gt=timezone.now(), reason__in=ending).exists():
        return None  # leaving its plan at the period's end (scheduled_ends): new terms would undo that
    scheduled = PlanChange.objects.filter(customer=locked, at__gt=timezone.now(), reason=PlanChange.Reason.TERMS_UPDATED)
    if scheduled.filter(terms=terms, at=starts_at).exists():
        return None  # scheduled and announced by an earlier run
    scheduled.delete()
    move = PlanChange.objects.create(
        customer=locked, from_plan_id=locked.plan_id, to_plan_id=locked.plan_id, terms=terms, at=starts_at,
        reason=PlanChange.Reason.TERMS_UPDATED,
    )
    outbox.enqueue(accounts_tasks.terms_notice_email_send, customer_id=locked.pk, old_terms_id=locked.terms_id,
                   new_terms_id=terms.pk, starts_at=starts_at.isoformat())
    return move


def terms_moves_due_apply(*, now: datetime | None = None) -> int:
    """Scheduled moves to new terms whose time has come: the customer takes the terms (the API's
    limits). Safe to repeat: a move applied, or overtaken by a later change, is left alone."""
    now = now or timezone.now()
    later = PlanChange.objects.filter(customer=OuterRef("customer"), at__lte=now).filter(
        Q(at__gt=OuterRef("at")) | Q(at=OuterRef("at"), pk__gt=OuterRef("pk")))
    due = (PlanChange.objects.filter(reason=PlanChange.Reason.TERMS_UPDATED, at__lte=now)
           .exclude(customer__terms=F("terms")).exclude(Exists(later)).order_by("at", "pk").values_list("pk", flat=True))
    return sum(_terms_move_apply(change_id=pk, now=now) for pk in due)


@transaction.atomic
def _terms_move_apply(*, change_id: int, now: datetime) -> bool:
    change = PlanChange.objects.select_related("terms").get(pk=change_id)
    locked = _customer_lock(Customer(pk=change.customer_id))
    latest = PlanChange.objects.filter(customer=locked, at__lte=now).order_by("-at", "-pk").first()
    if latest != change or locked.plan_id != change.to_plan_id or locked.terms_id == change.terms_id:
        return False
    if locked.status == Customer.Status.CANCELLED:
        return False
    locked.terms = change.terms
    locked.save(update_fields=["terms"])  # post_save raises config_version: the API reads the new limits
    return True


# --- a product added to a plan ---

@transaction.atomic
def plan_product_added(*, plan: Plan, product: Product) -> int:
    """`product` was added to `plan`: the plan's customers may call it at once. Returns how many
    customers took new terms.

    Terms are snapshots (README "Billing"), so each customer takes new terms: its own values plus the
    product. Price, included calls and overage are unchanged, so no bill moves and no notice is
    due. A move to newer terms already scheduled for next month keeps the product too. (Removing
    a product from a plan changes nothing for its customers: they keep what they took.)
    """
    slug = product.slug
    order = {s: i for i, s in enumerate(Product.objects.order_by("sort_order", "slug").values_list("slug", flat=True))}
    lacking = Customer.objects.filter(plan=plan).exclude(status=Customer.Status.CANCELLED).exclude(
        terms__entitlements__contains=[slug]).exclude(terms=None)
    moved: list[int] = []
    for old in Terms.objects.filter(pk__in=lacking.values("terms_id")):
        new = _terms_with_product(old, slug, order)
        # Locked and re-read: a customer whose plan or terms changed meanwhile is left to that change.
        ids = list(lacking.select_for_update(of=("self",)).filter(terms=old).values_list("pk", flat=True))
        Customer.objects.filter(pk__in=ids).update(terms=new)
        moved += ids
    scheduled = PlanChange.objects.select_for_update(of=("self",)).filter(
        to_plan=plan, reason=PlanChange.Reason.TERMS_UPDATED, at__gt=timezone.now(),
    ).exclude(terms__entitlements__contains=[slug]).select_related("terms")
    for change in scheduled:
        change.terms = _terms_with_product(change.terms, slug, order)
        change.save(update_fields=["terms"])
    customer_config_bump(customer_ids=moved)  # the API reads the new entitlements on the next call
    return len(moved)


def _terms_with_product(terms: Terms, slug: str, order: dict[str, int]) -> Terms:
    """`terms` with `slug` among its entitlements: an existing snapshot of the plan with exactly
    those values if there is one (the plan's current terms, typically), else a new one."""
    entitlements = sorted({*terms.entitlements, slug}, key=lambda s: (order.get(s, len(order)), s))
    values = {**dict(zip(Terms.VALUE_FIELDS, terms.values())), "entitlements": entitlements}
    same = Terms.objects.filter(plan_id=terms.plan_id, **values).order_by("-pk").first()
    return same or Terms.objects.create(plan_id=terms.plan_id, **values)
