"""Invoicing: generate, issue, pay, void, credit (README "Billing").

An invoice path reads gather (selectors) -> rate (billing.rating, pure) -> write (here). An
issued invoice never changes: generate only ever (re)writes a draft, issue freezes it with a
number, and corrections are credits on a later invoice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection as db, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

import outbox
from accounts.models import Customer
from core.money import ZERO, money
from core.periods import day_start, period_bounds, period_of
from plans.models import Plan

from . import signals, tasks
from .rating import BALANCE_CREDIT, Rating, rate
from .models import CreditEntry, Invoice, InvoiceLine, InvoiceNumberCounter, PaymentAttempt
from .selectors import (
    credit_balances, histories_by_customer, invoice_compute, spend_caps, terms_by_id, usage_by_customer_day,
)
from .signals import send_on_commit

logger = logging.getLogger(__name__)

def _draft_rows(invoice: Invoice, rating: Rating) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice=invoice, kind=line.kind, description=line.description, quantity=line.quantity,
            unit_price=line.unit_price, amount=line.amount, plan_id=line.plan_id, starts_on=line.starts_on,
            ends_on=line.ends_on, position=position,
        )
        for position, line in enumerate(rating.lines)
    ]


def _line_key(line: InvoiceLine) -> tuple:
    return (line.kind, line.description, line.quantity, line.unit_price, line.amount, line.plan_id,
            line.starts_on, line.ends_on, line.position)


def _invoice_values(rating: Rating) -> dict:
    return dict(subtotal=rating.charges, total=rating.total, plan_id=rating.end_plan_id, calls=rating.calls)


def invoice_generate(*, customer: Customer, period: str, final: bool = False) -> Invoice:
    """The customer's invoice for `period`: gather its history and usage, rate, write the draft.

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
        rating = invoice_compute(customer=customer, period=period)
        if invoice is None and not rating.has_days and not final:
            raise ValidationError({"period": f"{customer} has no billable days in {period}."})
        if invoice is None:
            invoice, _ = Invoice.objects.get_or_create(customer=customer, period=period)
            invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
            if invoice.is_locked:  # another process issued it between our read and our insert
                return invoice
        return _draft_write(invoice, rating, final=final)


def _draft_write(invoice: Invoice, rating: Rating, *, final: bool) -> Invoice:
    rows = _draft_rows(invoice, rating)
    stored = list(invoice.lines.order_by("position", "pk"))
    values = {**_invoice_values(rating), "is_final": invoice.is_final or final}
    unchanged = [_line_key(r) for r in rows] == [_line_key(r) for r in stored] and all(
        getattr(invoice, name) == value for name, value in values.items()
    )
    if unchanged:
        return invoice
    invoice.lines.all().delete()
    InvoiceLine.objects.bulk_create(rows)
    for name, value in values.items():
        setattr(invoice, name, value)
    invoice.save(update_fields=[name.removesuffix("_id") for name in values])
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
        invoice.paid_by = "credit balance" if invoice.subtotal > 0 else ""


def _issued_announce(invoices: list[Invoice]) -> None:
    """One durable task for the batch, written in its transaction: see invoice_issued_dispatch."""

    if invoices:
        outbox.enqueue(tasks.invoices_issued_dispatch, invoice_ids=[invoice.pk for invoice in invoices])


def invoice_issued_dispatch(*, invoice: Invoice) -> bool:
    """What follows an issue, once per invoice however often the task arrives: the signals
    (after the issue committed), the charge and the email queued, each on its own queue, so a
    silent mail server never holds up the charge. All or nothing: a failure rolls the receipt
    back and the task's retry does it again."""

    def work() -> None:
        signals.invoice_issued.send(sender=None, invoice=invoice)
        if invoice.status == Invoice.Status.PAID and invoice.total == 0:
            signals.invoice_paid.send(sender=None, invoice=invoice)
        if invoice.status == Invoice.Status.OPEN and invoice.total > 0:
            outbox.enqueue(tasks.invoice_charge, invoice_id=invoice.pk)
        outbox.enqueue(tasks.invoice_issued_email_task, invoice_id=invoice.pk)

    return outbox.run_once(key=f"invoice-issued:{invoice.pk}", work=work)


@transaction.atomic
def invoice_issue(*, invoice: Invoice) -> Invoice:
    """Freeze a draft: give it a number and open it (a $0 invoice is paid at once), email, charge."""
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.is_locked:
        return locked
    now = timezone.now()
    _issue_fields(locked, _numbers_take(count=1, year=now.year)[0], now)
    locked.save(update_fields=["number", "issued_at", "status", "paid_at", "paid_by"])
    _balance_debit([locked])
    _issued_announce([locked])
    return locked


def _balance_debit(invoices: list[Invoice]) -> None:
    """Issued invoices that drew on the credit balance take it out of the balance, once each."""
    used = dict(
        InvoiceLine.objects.filter(invoice__in=invoices, kind=InvoiceLine.Kind.CREDIT, description=BALANCE_CREDIT)
        .values_list("invoice_id", "amount")
    )
    CreditEntry.objects.bulk_create([
        CreditEntry(customer_id=invoice.customer_id, amount=used[invoice.pk], invoice=invoice,
                    reason=f"Used on invoice {invoice.number}", created_at=invoice.issued_at)
        for invoice in invoices if used.get(invoice.pk)
    ], ignore_conflicts=True)


def _customer_settle(customer_id: int) -> None:
    """Past-due ends when the last failed or uncollectible invoice is paid (or voided).

    Until then the customer stays past due, and the grace period keeps counting from when it
    first fell behind: paying one invoice does not restart another's grace period.
    """
    # The customer's row lock first: a failure committing meanwhile is seen by the check below.
    customer = Customer.objects.select_for_update().filter(pk=customer_id, status=Customer.Status.PAST_DUE).first()
    if customer is None or _invoices_overdue(customer_id=customer_id).exists():
        return
    customer.status, customer.past_due_since = Customer.Status.ACTIVE, None
    customer.save(update_fields=["status", "past_due_since"])  # post_save: full limits again


def _invoices_overdue(*, customer_id: int):
    """Unpaid invoices that keep a customer past due: uncollectible ones, and open ones whose
    charge has failed at least once."""
    failed = PaymentAttempt.objects.filter(invoice=OuterRef("pk"), status=PaymentAttempt.Status.FAILED)
    return Invoice.objects.filter(customer_id=customer_id).filter(
        Q(status=Invoice.Status.UNCOLLECTIBLE) | Q(Exists(failed), status=Invoice.Status.OPEN))


@transaction.atomic
def invoice_mark_paid(*, invoice: Invoice, at: datetime | None = None, paid_by: str = "") -> Invoice:
    """`paid_by` is what the customer reads: "Visa ••4242" (a charge), "bank transfer" (staff)."""
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.status == Invoice.Status.PAID:
        return locked
    if locked.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
        raise ValidationError({"invoice": f"A {locked.get_status_display().lower()} invoice cannot be paid."})
    locked.status, locked.paid_at, locked.next_charge_at = Invoice.Status.PAID, at or timezone.now(), None
    locked.paid_by = paid_by[:60]
    locked.save(update_fields=["status", "paid_at", "next_charge_at", "paid_by"])
    _customer_settle(locked.customer_id)
    send_on_commit(signals.invoice_paid, invoice=locked)
    outbox.enqueue(tasks.payment_received_email_task, invoice_id=locked.pk)
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
def invoice_credit_add(*, customer: Customer, amount: Decimal, description: str, by: str = "") -> CreditEntry:
    """Add credit to the customer's balance (a correction, a goodwill gesture).

    The next invoices use it, each up to its charges; what is left carries forward, never lost.
    An issued invoice itself never changes (README "Billing").
    """
    try:
        amount = Decimal(amount)
    except (ArithmeticError, TypeError, ValueError):
        raise ValidationError({"amount": "A credit is a positive amount in cents, e.g. 12.50."}) from None
    if not amount.is_finite() or amount <= 0 or money(amount) != amount or amount >= Decimal("1e9"):
        raise ValidationError({"amount": "A credit is a positive amount in cents, e.g. 12.50."})
    if not (description or "").strip():
        raise ValidationError({"description": "Say what the credit is for."})
    entry = CreditEntry.objects.create(customer=customer, amount=amount, reason=description.strip()[:200],
                                       created_by=(by or "")[:150])
    # The open period's draft, if one exists, shows the credit at once.
    for invoice in Invoice.objects.filter(customer=customer, status=Invoice.Status.DRAFT):
        invoice_generate(customer=customer, period=invoice.period)
    return entry


# --- month close in batches: a constant number of queries per batch, whatever its size ---

@dataclass(frozen=True)
class BatchReport:
    created: int
    regenerated: int
    skipped: int


_INSERT_INVOICES = """
    INSERT INTO {table} (customer_id, period, number, status, currency, subtotal, total, plan_id, calls,
                         is_final, created_at, paid_by)
    SELECT *, '' FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[],
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


def invoices_generate_batch(*, customer_ids: list[int], period: str) -> BatchReport:
    """Draft invoices for these customers; rows another run (or an earlier one) wrote are kept.

    Gather (a constant number of queries: customers and their changes, existing invoices, usage,
    terms, credit balances, spend caps) → rate each customer (pure) → one INSERT ... ON CONFLICT DO
    NOTHING for the invoices and one for their lines. Two runs racing insert each invoice once:
    the loser's row conflicts and its lines are never written.
    """
    start, end = period_bounds(period)
    ids = list(Customer.objects.filter(pk__in=customer_ids, created_at__lt=day_start(end)).values_list("pk", flat=True))
    existing = dict(Invoice.objects.filter(customer_id__in=ids, period=period).values_list("customer_id", "status"))
    fresh = [pk for pk in ids if pk not in existing]
    histories = histories_by_customer(customer_ids=fresh, before=day_start(end))
    usage = usage_by_customer_day(customer_ids=fresh, start=start, end=end)
    terms = terms_by_id({t for h in histories.values() for t in (h.signup_terms_id, *(c[1] for c in h.changes))})
    balances, caps = credit_balances(customer_ids=fresh), spend_caps(customer_ids=fresh, at=day_start(end))
    ratings = [
        rate(customer_id=pk, period=period, history=histories[pk], terms=terms, daily_calls=usage.get(pk, {}),
             credit_balance=balances.get(pk, ZERO), spend_cap=caps.get(pk))
        for pk in fresh
    ]
    ratings = [rating for rating in ratings if rating.has_days]
    created = _drafts_insert(ratings) if ratings else 0
    regenerated = _drafts_refresh([pk for pk, status in existing.items() if status == Invoice.Status.DRAFT], period)
    return BatchReport(created=created, regenerated=regenerated, skipped=len(ids) - len(ratings) - regenerated)


@transaction.atomic
def _drafts_insert(ratings: list[Rating]) -> int:
    now = timezone.now()
    columns = list(zip(*[
        (r.customer_id, r.period, "", Invoice.Status.DRAFT.value, "USD", r.charges, r.total, r.end_plan_id, r.calls,
         False, now)
        for r in ratings
    ]))
    with db.cursor() as cursor:
        cursor.execute(_INSERT_INVOICES.format(table=Invoice._meta.db_table), [list(c) for c in columns])
        inserted = dict((customer_id, pk) for pk, customer_id in cursor.fetchall())
    lines = [
        (inserted[r.customer_id], line.kind, line.description, line.quantity, line.unit_price, line.amount,
         line.plan_id, line.starts_on, line.ends_on, position)
        for r in ratings if r.customer_id in inserted for position, line in enumerate(r.lines)
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
    SET number = batch.number, status = batch.status, paid_at = batch.paid_at, paid_by = batch.paid_by, issued_at = %s
    FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::timestamptz[], %s::varchar[])
         AS batch(id, number, status, paid_at, paid_by)
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
    columns = [[getattr(invoice, name) for invoice in drafts] for name in ("pk", "number", "status", "paid_at", "paid_by")]
    with db.cursor() as cursor:
        cursor.execute(_ISSUE_INVOICES.format(table=Invoice._meta.db_table), [now, *columns])
    for invoice in drafts:
        invoice.issued_at = now
    _balance_debit(drafts)
    _issued_announce(drafts)
    return drafts


