"""Charging invoices: the Stripe customer a charge goes to, one `PaymentAttempt` per try, its
outcome, and the retry day a failure sets (README "Billing").

Stripe is reached only through `billing.gateway`; invoices change state only through
`billing.invoicing` (paid, uncollectible). The rule that keeps a charge single: a
`PaymentAttempt` row is committed before Stripe is called, and whoever touches an attempt again
(a retried task, a webhook) first asks Stripe what became of it, under a row lock. A new
attempt is only made when a charge is due (the first one, a dunning day that has come, or a
card saved since the last failure), so the attempt row is also the claim on the charge.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import outbox
from accounts.models import Customer

from . import gateway, tasks
from .gateway import CardDeclined, PaymentIntentInfo, StripeNotFound, StripeRejected
from .invoicing import invoice_mark_paid, invoice_mark_uncollectible
from .models import Invoice, PaymentAttempt, PaymentMethod
from .signals import invoice_payment_failed

logger = logging.getLogger(__name__)

# Invoices a charge may still collect: open ones, and uncollectible ones once a new card arrives.
CHARGEABLE = (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE)
# Stripe's card brands as people write them ("visa" -> "Visa ••4242").
CARD_BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover",
               "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay", "cartes_bancaires": "Cartes Bancaires"}


@dataclass(frozen=True)
class ChargeResult:
    outcome: str  # paid | failed | pending | skipped | busy
    attempt_id: int | None = None


# --- The Stripe customer ---------------------------------------------------------------------


def stripe_customer_ensure(*, customer: Customer) -> str:
    """The customer's Stripe id, created when missing or when Stripe no longer knows it.

    A lost Stripe customer (a test-data reset, or localstripe started from scratch) takes its
    cards with it, so the stored card is dropped too: the portal then asks for a new one.
    """
    stored = Customer.objects.filter(pk=customer.pk).values_list("stripe_customer_id", flat=True).get()
    if stored and gateway.stripe_customer_exists(stripe_customer_id=stored):
        return stored  # the usual case, without taking the customer's row lock
    with transaction.atomic():
        customer = Customer.objects.select_for_update(of=("self",)).select_related("owner").get(pk=customer.pk)
        stored = customer.stripe_customer_id
        if stored and gateway.stripe_customer_exists(stripe_customer_id=stored):
            return stored  # another process made it while we waited for the lock
        if stored:
            logger.warning("stripe customer %s of customer %s is gone; recreating it", stored, customer.pk)
            PaymentMethod.objects.filter(customer=customer).delete()
        created = gateway.stripe_customer_create(
            customer_id=customer.pk, email=customer.email, name=customer.company,
            replaces=stored,
        )
        # update(), not save(): nothing the API enforces changed, so no config bump.
        Customer.objects.filter(pk=customer.pk).update(stripe_customer_id=created)
        return created


def card_label(method: PaymentMethod | None) -> str:
    """How a card reads to its owner: "Visa ••4242"."""
    if method is None:
        return ""
    brand = CARD_BRANDS.get(method.brand.lower(), method.brand.replace("_", " ").title() or "Card")
    return f"{brand} ••{method.last4}" if method.last4 else brand


def charges_retry_now(*, customer: Customer) -> None:
    """A new card makes every failed invoice due at once (see _retry_due)."""
    unpaid = Invoice.objects.filter(customer=customer, status__in=CHARGEABLE, total__gt=0)
    for invoice_id in unpaid.filter(attempts__isnull=False).distinct().values_list("pk", flat=True):
        outbox.enqueue(tasks.invoice_charge, invoice_id=invoice_id)


# --- Charging --------------------------------------------------------------------------------


def invoice_charge_run(*, invoice_id: int) -> ChargeResult:
    """Charge an unpaid invoice once. Raises StripeUnavailable for the task to retry later."""
    attempt = _attempt_open(invoice_id=invoice_id)
    if attempt is None:
        return ChargeResult(outcome="skipped")
    if attempt.status == PaymentAttempt.Status.FAILED:  # no card: nothing to ask Stripe
        return ChargeResult(outcome="failed", attempt_id=attempt.pk)
    # Before any lock: it may write the customer row (a Stripe customer made or remade).
    stripe_id = stripe_customer_ensure(customer=attempt.invoice.customer)
    with transaction.atomic():
        # Held across the Stripe call: a second worker or a webhook for this attempt waits or
        # steps aside instead of charging again (localstripe ignores idempotency keys).
        # of=self: only the attempt row; the invoice and customer stay free for plan changes.
        locked = PaymentAttempt.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            pk=attempt.pk, status=PaymentAttempt.Status.PENDING).select_related("invoice__customer").first()
        if locked is None:
            return ChargeResult(outcome="busy", attempt_id=attempt.pk)
        if not locked.stripe_payment_intent_id and locked.stripe_customer_id != stripe_id:
            # The Stripe customer was made (or remade) just now: the charge goes to this one.
            locked.stripe_customer_id = stripe_id
            locked.save(update_fields=["stripe_customer_id"])
        intent = _attempt_intent(locked, stripe_customer_id=stripe_id)
        return attempt_settle(locked, intent)


def _attempt_open(*, invoice_id: int) -> PaymentAttempt | None:
    """The pending attempt (a retry), or a new one committed before Stripe hears of it.

    None when nothing is due; an attempt already failed when there is no card.
    """
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update(of=("self",)).select_related("customer").filter(pk=invoice_id).first()
        return None if invoice is None else attempt_take(invoice, now=timezone.now())


def attempt_take(invoice: Invoice, *, now: datetime) -> PaymentAttempt | None:
    """Under the invoice's row lock: its pending attempt, or a new one if a charge is due now.

    Making the attempt is the claim: whoever comes next (a second task, a second dunning run)
    finds it pending, or finds the charge no longer due.
    """
    if invoice.status not in CHARGEABLE or invoice.total <= 0:
        return None
    pending = invoice.attempts.filter(status=PaymentAttempt.Status.PENDING).first()
    if pending is not None:
        return pending
    last = invoice.attempts.order_by("-number").first()
    if last is not None and not _retry_due(invoice, last, now=now):
        return None
    attempt = PaymentAttempt.objects.create(
        invoice=invoice, number=(last.number if last else 0) + 1, amount=invoice.total,
        stripe_customer_id=invoice.customer.stripe_customer_id, currency=invoice.currency.lower(),
    )
    if invoice.next_charge_at is not None:
        # Claimed: this attempt's outcome sets the next retry day (or none).
        invoice.next_charge_at = None
        invoice.save(update_fields=["next_charge_at"])
    if not PaymentMethod.objects.filter(customer_id=invoice.customer_id).exists():
        _attempt_fail(attempt, code="no_card", message="No card on file.")
    return attempt


def _retry_due(invoice: Invoice, last: PaymentAttempt, *, now: datetime) -> bool:
    """After a failure, the next charge waits for its dunning day, or for a new card."""
    if invoice.next_charge_at is not None and invoice.next_charge_at <= now:
        return True
    card = PaymentMethod.objects.filter(customer_id=invoice.customer_id).values_list("updated_at", flat=True).first()
    return card is not None and last.finished_at is not None and card > last.finished_at


def _attempt_intent(attempt: PaymentAttempt, *, stripe_customer_id: str) -> PaymentIntentInfo:
    """What Stripe did for this attempt: look before creating, so a retry never charges twice."""
    if attempt.stripe_payment_intent_id:
        return gateway.payment_intent_retrieve(payment_intent_id=attempt.stripe_payment_intent_id)
    found = gateway.payment_intent_find(stripe_customer_id=stripe_customer_id, invoice_id=attempt.invoice_id,
                                        attempt_number=attempt.number, since=attempt.created_at)
    if found is not None:
        return found
    method = PaymentMethod.objects.filter(customer_id=attempt.invoice.customer_id).first()
    if method is None:  # dropped just now: Stripe had lost the customer and its cards
        return PaymentIntentInfo(id="", status="canceled", amount_cents=0, invoice_id=str(attempt.invoice_id),
                                 attempt_number=str(attempt.number), error_code="no_card",
                                 error_message="No card on file.")
    try:
        return gateway.payment_intent_create(
            amount=attempt.amount, currency=attempt.currency, stripe_customer_id=stripe_customer_id,
            payment_method_id=method.stripe_payment_method_id,
            invoice_id=attempt.invoice_id, attempt_number=attempt.number, idempotency_key=attempt.idempotency_key,
        )
    except (CardDeclined, StripeNotFound, StripeRejected) as refused:
        # A refusal (declined, or a card Stripe no longer has) is this attempt's answer: failed
        # and left to dunning. Only "unreachable" propagates, for the task to retry the same attempt.
        return PaymentIntentInfo(id=getattr(refused, "payment_intent_id", ""), status="requires_payment_method",
                                 amount_cents=0, invoice_id=str(attempt.invoice_id),
                                 attempt_number=str(attempt.number), error_code=refused.code,
                                 error_message=str(refused))


def attempt_settle(attempt: PaymentAttempt, intent: PaymentIntentInfo) -> ChargeResult:
    if intent.id and not attempt.stripe_payment_intent_id:
        attempt.stripe_payment_intent_id = intent.id
        attempt.save(update_fields=["stripe_payment_intent_id"])
    if intent.succeeded:
        _attempt_succeed(attempt)
        return ChargeResult(outcome="paid", attempt_id=attempt.pk)
    if intent.failed:
        _attempt_fail(attempt, code=intent.error_code or "payment_failed",
                      message=intent.error_message or "The payment failed.")
        return ChargeResult(outcome="failed", attempt_id=attempt.pk)
    # processing / requires_action: Stripe's webhook (or the next dunning pass) settles it.
    return ChargeResult(outcome="pending", attempt_id=attempt.pk)


def _attempt_succeed(attempt: PaymentAttempt, at: datetime | None = None) -> None:
    now = timezone.now()
    attempt.status, attempt.finished_at = PaymentAttempt.Status.SUCCEEDED, now
    attempt.save(update_fields=["status", "finished_at"])
    invoice = Invoice.objects.select_for_update().get(pk=attempt.invoice_id)
    if invoice.status in CHARGEABLE:  # paid already (staff, bank transfer): nothing more to do
        # The card charged is the one on file now: a new card is saved only under the
        # customer's lock, and a charge that follows it is a new attempt.
        card = PaymentMethod.objects.filter(customer_id=invoice.customer_id).first()
        invoice_mark_paid(invoice=invoice, at=at or now, paid_by=card_label(card))


def _attempt_fail(attempt: PaymentAttempt, *, code: str, message: str) -> None:
    """A declined charge: past_due now, the next retry scheduled, or uncollectible after the last."""
    now = timezone.now()
    attempt.status, attempt.finished_at = PaymentAttempt.Status.FAILED, now
    attempt.failure_code, attempt.failure_message = code[:60], message[:300]
    attempt.save(update_fields=["status", "finished_at", "failure_code", "failure_message"])
    invoice = Invoice.objects.select_for_update(of=("self",)).select_related("customer").get(pk=attempt.invoice_id)
    invoice.next_charge_at = dunning_next_charge_at(invoice=invoice)
    invoice.save(update_fields=["next_charge_at"])
    if invoice.next_charge_at is None and invoice.status == Invoice.Status.OPEN:
        invoice = invoice_mark_uncollectible(invoice=invoice)
    _customer_past_due(invoice.customer, since=now)
    # One email per failed attempt: this runs once per attempt (it leaves PENDING under its lock).
    outbox.enqueue(tasks.payment_failed_email_task, attempt_id=attempt.pk)
    transaction.on_commit(lambda: invoice_payment_failed.send(sender=None, invoice=invoice, attempt=attempt))


def _customer_past_due(customer: Customer, *, since: datetime) -> None:
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    if customer.status == Customer.Status.CANCELLED:
        return  # a final invoice that fails does not reopen a cancelled account
    if customer.status != Customer.Status.PAST_DUE or customer.past_due_since is None:
        customer.status = Customer.Status.PAST_DUE
        customer.past_due_since = customer.past_due_since or since
        customer.save(update_fields=["status", "past_due_since"])  # save(): bumps the API config


def dunning_next_charge_at(*, invoice: Invoice) -> datetime | None:
    """Retries fall on BILLING_RETRY_DAYS after the first failure; None once they are spent."""
    failed = list(invoice.attempts.filter(status=PaymentAttempt.Status.FAILED)
                  .order_by("number").values_list("finished_at", flat=True))
    days = sorted(settings.BILLING_RETRY_DAYS)
    if not failed or len(failed) > len(days):
        return None
    return failed[0] + timedelta(days=days[len(failed) - 1])

