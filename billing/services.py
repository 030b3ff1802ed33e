"""Billing writes: plan changes, cancellation, invoices (generate, issue, paid, void, credit).

An issued invoice never changes: generate only ever (re)writes a draft, issue freezes it with a
number, and corrections are credit lines on a later invoice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection as db, transaction
from django.utils import timezone

import outbox
from accounts.models import Customer
from plans.models import Plan

from . import signals
from .calculations import InvoiceDraft, day_start, invoice_draft_build, money, period_bounds, period_of, timeline_from_changes
from .models import Invoice, InvoiceLine, InvoiceNumberCounter, PaymentMethod, PlanChange, TrialNotice
from .selectors import changes_by_customer, invoice_compute, plans_by_id, usage_by_customer_day

logger = logging.getLogger(__name__)

# Reasons that may move a customer to a plan that is not offered publicly.
_SYSTEM_REASONS = {PlanChange.Reason.STAFF, PlanChange.Reason.TRIAL_ENDED}


def _on_commit_send(signal, **kwargs) -> None:
    transaction.on_commit(lambda: signal.send(sender=None, **kwargs))


def _customer_lock(customer: Customer) -> Customer:
    return Customer.objects.select_for_update().select_related("plan").get(pk=customer.pk)


@transaction.atomic
def plan_change(*, customer: Customer, plan: Plan, reason: str = PlanChange.Reason.CUSTOMER) -> PlanChange:
    """Move the customer to `plan` now. The API sees the new limits on its next call; keys keep working.

    During a trial a paid plan keeps the trial until it ends; a plan without a price ends it.
    A plan change never starts a trial.
    """
    locked = _customer_lock(customer)
    target = Plan.objects.filter(pk=getattr(plan, "pk", None)).first()
    if target is None:
        raise ValidationError({"plan": "Choose one of the plans on offer."})
    if locked.status == Customer.Status.CANCELLED:
        raise ValidationError({"plan": "This account is cancelled."})
    if target.pk == locked.plan_id:
        raise ValidationError({"plan": f"You are already on the {target.name} plan."})
    if not target.is_public and reason not in _SYSTEM_REASONS:
        raise ValidationError({"plan": "Choose one of the plans on offer."})
    now = timezone.now()
    change = PlanChange.objects.create(customer=locked, from_plan_id=locked.plan_id, to_plan=target, at=now, reason=reason)
    locked.plan = target
    fields = ["plan"]
    if locked.status == Customer.Status.TRIAL and not target.is_paid:
        locked.status, locked.trial_ends_at = Customer.Status.ACTIVE, min(locked.trial_ends_at or now, now)
        fields += ["status", "trial_ends_at"]
    locked.save(update_fields=fields)  # post_save raises config_version: new limits on the next call
    _sync(customer, locked, fields)
    _on_commit_send(signals.plan_changed, customer=locked, change=change)
    return change


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
    from metering.services import usage_flush

    try:
        usage_flush()
    except Exception:  # noqa: BLE001 - Redis down must not block a cancellation
        logger.warning("usage flush before a cancellation failed; the final invoice uses flushed usage", exc_info=True)


def _draft_rows(invoice: Invoice, draft: InvoiceDraft) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice=invoice, kind=line.kind, description=line.description, quantity=line.quantity,
            unit_price=line.unit_price, amount=line.amount, plan=line.plan, starts_on=line.starts_on,
            ends_on=line.ends_on, position=position,
        )
        for position, line in enumerate(draft.lines)
    ]


def _line_key(line: InvoiceLine) -> tuple:
    return (line.kind, line.description, line.quantity, line.unit_price, line.amount, line.plan_id,
            line.starts_on, line.ends_on, line.position)


def invoice_generate(*, customer: Customer, period: str, final: bool = False) -> Invoice:
    """The customer's invoice for `period`, computed from usage and plan history.

    Idempotent: an issued invoice is returned unchanged, and a draft is rewritten only if the
    numbers moved (usage flushed late, a credit added); otherwise nothing is written.
    """
    start, _ = period_bounds(period)
    if day_start(start) > timezone.now():
        raise ValidationError({"period": f"{period} has not started yet."})
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().filter(customer=customer, period=period).first()
        if invoice is not None and invoice.is_locked:
            return invoice
        draft = invoice_compute(customer=customer, period=period)
        if invoice is None and not draft.has_days and not final:
            raise ValidationError({"period": f"{customer} has no billable days in {period}."})
        if invoice is None:
            invoice, _ = Invoice.objects.get_or_create(customer=customer, period=period)
            invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
            if invoice.is_locked:  # another process issued it between our read and our insert
                return invoice
        return _draft_write(invoice, draft, final=final)


def _draft_write(invoice: Invoice, draft: InvoiceDraft, *, final: bool) -> Invoice:
    rows = _draft_rows(invoice, draft)
    stored = list(invoice.lines.order_by("position", "pk"))
    values = dict(subtotal=draft.subtotal, total=draft.total, plan=draft.plan, calls=draft.calls,
                  is_final=invoice.is_final or final)
    unchanged = [_line_key(r) for r in rows] == [_line_key(r) for r in stored] and all(
        getattr(invoice, name) == value for name, value in values.items()
    )
    if unchanged:
        return invoice
    invoice.lines.all().delete()
    InvoiceLine.objects.bulk_create(rows)
    for name, value in values.items():
        setattr(invoice, name, value)
    invoice.save(update_fields=[*values])
    return invoice


def _numbers_take(*, count: int, year: int) -> list[str]:
    """`count` fresh numbers for `year`, under the counter row's lock: sequential, never reused."""
    InvoiceNumberCounter.objects.get_or_create(year=year)
    counter = InvoiceNumberCounter.objects.select_for_update().get(year=year)
    first = counter.last + 1
    counter.last += count
    counter.save(update_fields=["last"])
    return [f"TB-{year}-{n:06d}" for n in range(first, first + count)]


def _issue_fields(invoice: Invoice, number: str, now: datetime) -> None:
    invoice.number, invoice.issued_at = number, now
    if invoice.total > 0:
        invoice.status = Invoice.Status.OPEN
    else:  # customers see every month, even the free ones
        invoice.status, invoice.paid_at = Invoice.Status.PAID, now


def _issued_announce(invoices: list[Invoice]) -> None:
    """One durable task for the batch, written in its transaction: see invoice_issued_dispatch."""
    from .tasks import invoices_issued_dispatch

    if invoices:
        outbox.enqueue(invoices_issued_dispatch, invoice_ids=[invoice.pk for invoice in invoices])


def invoice_issued_dispatch(*, invoice: Invoice) -> bool:
    """What follows an issue, once per invoice however often the task arrives: the signals
    (after the issue committed), the charge queued, the email. All or nothing: a failure
    rolls the receipt back and the task's retry does it again."""
    from .emails import invoice_issued_email_send
    from .tasks import invoice_charge

    def work() -> None:
        signals.invoice_issued.send(sender=None, invoice=invoice)
        if invoice.status == Invoice.Status.PAID and invoice.total == 0:
            signals.invoice_paid.send(sender=None, invoice=invoice)
        if invoice.status == Invoice.Status.OPEN and invoice.total > 0:
            outbox.enqueue(invoice_charge, invoice_id=invoice.pk)
        invoice_issued_email_send(invoice_id=invoice.pk)

    return outbox.run_once(key=f"invoice-issued:{invoice.pk}", work=work)


@transaction.atomic
def invoice_issue(*, invoice: Invoice) -> Invoice:
    """Freeze a draft: give it a number and open it (a $0 invoice is paid at once), email, charge."""
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.is_locked:
        return locked
    now = timezone.now()
    _issue_fields(locked, _numbers_take(count=1, year=now.year)[0], now)
    locked.save(update_fields=["number", "issued_at", "status", "paid_at"])
    _issued_announce([locked])
    return locked


def _customer_settle(customer_id: int) -> None:
    """A paid (or written-off) invoice ends the customer's past-due state at once."""
    updated = Customer.objects.filter(pk=customer_id, status=Customer.Status.PAST_DUE)
    for customer in updated.select_for_update():
        customer.status, customer.past_due_since = Customer.Status.ACTIVE, None
        customer.save(update_fields=["status", "past_due_since"])  # post_save: full limits again


@transaction.atomic
def invoice_mark_paid(*, invoice: Invoice, at: datetime | None = None) -> Invoice:
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.status == Invoice.Status.PAID:
        return locked
    if locked.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
        raise ValidationError({"invoice": f"A {locked.get_status_display().lower()} invoice cannot be paid."})
    locked.status, locked.paid_at, locked.next_charge_at = Invoice.Status.PAID, at or timezone.now(), None
    locked.save(update_fields=["status", "paid_at", "next_charge_at"])
    _customer_settle(locked.customer_id)
    _on_commit_send(signals.invoice_paid, invoice=locked)
    return locked


@transaction.atomic
def invoice_void(*, invoice: Invoice) -> Invoice:
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.status == Invoice.Status.VOID:
        return locked
    if locked.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
        raise ValidationError({"invoice": f"A {locked.get_status_display().lower()} invoice cannot be voided; "
                                          "credit the customer on the next invoice instead."})
    locked.status, locked.voided_at, locked.next_charge_at = Invoice.Status.VOID, timezone.now(), None
    locked.save(update_fields=["status", "voided_at", "next_charge_at"])
    _customer_settle(locked.customer_id)
    return locked


@transaction.atomic
def invoice_mark_uncollectible(*, invoice: Invoice) -> Invoice:
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.status == Invoice.Status.UNCOLLECTIBLE:
        return locked
    if locked.status != Invoice.Status.OPEN:
        raise ValidationError({"invoice": "Only an open invoice can be marked uncollectible."})
    locked.status, locked.next_charge_at = Invoice.Status.UNCOLLECTIBLE, None
    locked.save(update_fields=["status", "next_charge_at"])
    return locked


@transaction.atomic
def invoice_credit_add(*, customer: Customer, amount: Decimal, description: str) -> InvoiceLine:
    """Credit the customer on the current period's invoice (a correction of an issued one).

    The credit sits on the period's draft until it is generated and issued; it reduces that
    invoice's total, never below zero.
    """
    amount = Decimal(amount)
    if amount <= 0 or money(amount) != amount:
        raise ValidationError({"amount": "A credit is a positive amount in cents, e.g. 12.50."})
    if not (description or "").strip():
        raise ValidationError({"description": "Say what the credit is for."})
    period = period_of(timezone.now())
    invoice, _ = Invoice.objects.get_or_create(customer=customer, period=period)
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if invoice.is_locked:
        raise ValidationError({"amount": f"The {period} invoice is already issued; credit the next period."})
    return InvoiceLine.objects.create(
        invoice=invoice, kind=InvoiceLine.Kind.CREDIT, description=description.strip()[:200],
        quantity=Decimal(1), unit_price=-amount, amount=-amount, position=1000,
    )


# --- month close in batches: a constant number of queries per batch, whatever its size ---

@dataclass(frozen=True)
class BatchReport:
    created: int
    regenerated: int
    skipped: int


_INSERT_INVOICES = """
    INSERT INTO {table} (customer_id, period, number, status, currency, subtotal, total, plan_id, calls,
                         is_final, created_at)
    SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[],
                         %s::numeric[], %s::numeric[], %s::bigint[], %s::bigint[], %s::boolean[],
                         %s::timestamptz[])
    ON CONFLICT (customer_id, period) DO NOTHING
    RETURNING id, customer_id
"""


_INSERT_LINES = """
    INSERT INTO {table} (invoice_id, kind, description, quantity, unit_price, amount, plan_id, starts_on, ends_on,
                         position)
    SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::numeric[], %s::numeric[], %s::numeric[],
                         %s::bigint[], %s::date[], %s::date[], %s::smallint[])
"""


def invoices_generate_batch(*, customer_ids: list[int], period: str, plans: dict[int, Plan] | None = None) -> BatchReport:
    """Draft invoices for these customers; rows another run (or an earlier one) wrote are kept.

    Queries: customers, existing invoices, plan changes, usage, one INSERT ... ON CONFLICT DO
    NOTHING for the invoices and one for their lines. Two runs racing insert each invoice once:
    the loser's row conflicts and its lines are never written.
    """
    start, end = period_bounds(period)
    plans = plans or plans_by_id()
    customers = list(Customer.objects.filter(pk__in=customer_ids, created_at__lt=day_start(end))
                     .values_list("pk", "plan_id", "created_at", "trial_ends_at"))
    existing = dict(Invoice.objects.filter(customer_id__in=customer_ids, period=period).values_list("customer_id", "status"))
    ids = [row[0] for row in customers]
    changes = changes_by_customer(customer_ids=ids, before=day_start(end))
    usage = usage_by_customer_day(customer_ids=ids, start=start, end=end)
    drafts = []
    for pk, plan_id, created_at, trial_ends_at in customers:
        if pk in existing:
            continue
        timeline = timeline_from_changes(created_at=created_at, current_plan_id=plan_id, changes=changes.get(pk, []))
        draft = invoice_draft_build(customer_id=pk, period=period, timeline=timeline, trial_ends_at=trial_ends_at,
                                    plans=plans, daily_calls=usage.get(pk, {}))
        if draft.has_days:
            drafts.append(draft)
    created = _drafts_insert(drafts) if drafts else 0
    regenerated = _drafts_refresh([pk for pk, status in existing.items() if status == Invoice.Status.DRAFT], period)
    return BatchReport(created=created, regenerated=regenerated, skipped=len(customers) - len(drafts) - regenerated)


@transaction.atomic
def _drafts_insert(drafts: list[InvoiceDraft]) -> int:
    now = timezone.now()
    columns = list(zip(*[
        (d.customer_id, d.period, "", Invoice.Status.DRAFT.value, "USD", d.subtotal, d.total,
         d.plan.pk if d.plan else None, d.calls, False, now)
        for d in drafts
    ]))
    with db.cursor() as cursor:
        cursor.execute(_INSERT_INVOICES.format(table=Invoice._meta.db_table), [list(c) for c in columns])
        inserted = dict((customer_id, pk) for pk, customer_id in cursor.fetchall())
    lines = [
        (inserted[d.customer_id], line.kind, line.description, line.quantity, line.unit_price, line.amount,
         line.plan.pk if line.plan else None, line.starts_on, line.ends_on, position)
        for d in drafts if d.customer_id in inserted for position, line in enumerate(d.lines)
    ]
    if lines:
        with db.cursor() as cursor:
            cursor.execute(_INSERT_LINES.format(table=InvoiceLine._meta.db_table), [list(c) for c in zip(*lines)])
    return len(inserted)


def _drafts_refresh(customer_ids: list[int], period: str) -> int:
    """Drafts that already existed (a credit was added, or a crashed run): the one-by-one path."""
    for customer in Customer.objects.filter(pk__in=customer_ids):
        invoice_generate(customer=customer, period=period)
    return len(customer_ids)


# One statement for the whole batch (Django's bulk_update writes a CASE per row and field).
_ISSUE_INVOICES = """
    UPDATE {table} AS invoice
    SET number = batch.number, status = batch.status, paid_at = batch.paid_at, issued_at = %s
    FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::timestamptz[]) AS batch(id, number, status, paid_at)
    WHERE invoice.id = batch.id
"""


@transaction.atomic
def invoices_issue_batch(*, period: str, limit: int) -> list[Invoice]:
    """Issue up to `limit` of the period's drafts; drafts another run holds are skipped, not waited for."""
    drafts = list(
        Invoice.objects.select_for_update(skip_locked=True)
        .filter(period=period, status=Invoice.Status.DRAFT).order_by("pk")[:limit]
    )
    if not drafts:
        return []
    now = timezone.now()
    for invoice, number in zip(drafts, _numbers_take(count=len(drafts), year=now.year)):
        _issue_fields(invoice, number, now)
    columns = [[getattr(invoice, name) for invoice in drafts] for name in ("pk", "number", "status", "paid_at")]
    with db.cursor() as cursor:
        cursor.execute(_ISSUE_INVOICES.format(table=Invoice._meta.db_table), [now, *columns])
    _issued_announce(drafts)
    return drafts


# --- trials ---

def _trial_notice(customer: Customer, kind: str, signal) -> bool:
    """Record the notice; only the run that records it sends the email (hourly runs repeat)."""
    from .tasks import trial_email_send

    _, created = TrialNotice.objects.get_or_create(customer=customer, kind=kind)
    if created:
        outbox.enqueue(trial_email_send, customer_id=customer.pk, kind=kind)
        _on_commit_send(signal, customer=customer)
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
        plan_change(customer=locked, plan=default, reason=PlanChange.Reason.TRIAL_ENDED)
        locked = _customer_lock(locked)
    if locked.status == Customer.Status.TRIAL:
        locked.status = Customer.Status.ACTIVE
        locked.save(update_fields=["status"])
    _trial_notice(locked, TrialNotice.Kind.ENDED, signals.trial_ended)
    return locked
