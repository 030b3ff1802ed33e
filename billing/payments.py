"""Payment writes: the Stripe customer, the card on file, charging invoices and dunning.

Stripe is reached only through `billing.gateway`; invoices change state only through
`billing.invoicing` (paid, uncollectible). The rule that keeps a charge single: a
`PaymentAttempt` row is committed before Stripe is called, and whoever touches an attempt again
(a retried task, a webhook) first asks Stripe what became of it, under a row lock. A new
attempt is only made when a charge is due (the first one, a dunning day that has come, or a
card saved since the last failure), so the attempt row is also the claim on the charge.

Stripe's events settle an attempt only when they match it (intent, customer, amount,
currency); anything else is kept as a mismatch for the nightly reconciliation (README "Billing").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

import outbox
from accounts.models import Customer

from . import gateway, tasks
from .gateway import (
    BillingError, CardDeclined, PaymentIntentInfo, SetupIntentInfo, StripeNotFound, StripeRejected,
    amount_to_cents,
)
from .invoicing import invoice_mark_paid, invoice_mark_uncollectible
from .models import Invoice, PaymentAttempt, PaymentMethod, StripeEvent
from .signals import invoice_payment_failed
from .subscriptions import trial_card_check

logger = logging.getLogger(__name__)

# Invoices a charge may still collect: open ones, and uncollectible ones once a new card arrives.
CHARGEABLE = (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE)
# A pending attempt older than this was abandoned by a crashed worker; dunning picks it up.
STALE_ATTEMPT = timedelta(minutes=30)
# An issued invoice with no attempt this long after its issue lost its charge task: dunning
# charges it. Long enough for the dispatch that follows an issue to have queued the charge.
UNATTEMPTED_AFTER = timedelta(minutes=10)
# Invoices one dunning run claims; the next hourly run takes the rest.
DUNNING_BATCH = 500
# Stripe's card brands as people write them ("visa" -> "Visa ••4242").
CARD_BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover",
               "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay", "cartes_bancaires": "Cartes Bancaires"}


class CardSetupFailed(BillingError):
    """The card could not be saved."""

    code = "card_setup_failed"


class PaymentMismatch(BillingError):
    """A Stripe payment event that does not match the attempt on record: it settles nothing."""

    code = "payment_mismatch"


@dataclass(frozen=True)
class ChargeResult:
    outcome: str  # paid | failed | skipped | busy
    attempt_id: int | None = None


# --- Stripe customer -------------------------------------------------------------------------


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


# --- Card on file ----------------------------------------------------------------------------


def card_setup_start(*, customer: Customer) -> SetupIntentInfo:
    """A SetupIntent for the billing page's card Element (off-session use later)."""
    stripe_id = stripe_customer_ensure(customer=customer)
    return gateway.setup_intent_create(stripe_customer_id=stripe_id, customer_id=customer.pk)


def card_setup_confirm(*, customer: Customer, setup_intent_id: str) -> PaymentMethod:
    """The browser came back from confirmCardSetup: ask Stripe, never trust the query string."""
    intent = gateway.setup_intent_retrieve(setup_intent_id=setup_intent_id)
    if not customer.stripe_customer_id or intent.customer != customer.stripe_customer_id:
        raise CardSetupFailed("That card setup does not belong to this account.", code="not_yours")
    if intent.status != "succeeded" or not intent.payment_method:
        raise CardSetupFailed("The card was not saved. Please try again or use another card.")
    return card_save(customer=customer, payment_method_id=intent.payment_method)


def card_save_from_setup_intent(*, stripe_customer_id: str, payment_method_id: str) -> PaymentMethod | None:
    """The webhook path (setup_intent.succeeded); None when the Stripe customer is not ours."""
    customer = Customer.objects.filter(stripe_customer_id=stripe_customer_id).first() if stripe_customer_id else None
    if customer is None or not payment_method_id:
        return None
    return card_save(customer=customer, payment_method_id=payment_method_id)


def card_save(*, customer: Customer, payment_method_id: str) -> PaymentMethod:
    """Record the card (once, whichever path arrives first) and retry what it can pay now."""
    card = gateway.payment_method_retrieve(payment_method_id=payment_method_id)
    with transaction.atomic():
        Customer.objects.select_for_update().filter(pk=customer.pk).first()
        existing = PaymentMethod.objects.filter(customer=customer).first()
        if existing and existing.stripe_payment_method_id == card.id:
            return existing
        method, _ = PaymentMethod.objects.update_or_create(
            customer=customer,
            defaults=dict(
                stripe_payment_method_id=card.id, brand=card.brand, last4=card.last4, fingerprint=card.fingerprint,
                exp_month=card.exp_month, exp_year=card.exp_year, updated_at=timezone.now(),
            ),
        )
        trial_card_check(customer=customer, method=method)  # one trial per card: may end a trial now
        _charges_retry_now(customer=customer)
        return method


def _charges_retry_now(*, customer: Customer) -> None:
    """A new card makes every failed invoice due at once (see _retry_due)."""
    unpaid = Invoice.objects.filter(customer=customer, status__in=CHARGEABLE, total__gt=0)
    for invoice_id in unpaid.filter(attempts__isnull=False).distinct().values_list("pk", flat=True):
        outbox.enqueue(tasks.invoice_charge, invoice_id=invoice_id)


def card_label(method: PaymentMethod | None) -> str:
    """How a card reads to its owner: "Visa ••4242"."""
    if method is None:
        return ""
    brand = CARD_BRANDS.get(method.brand.lower(), method.brand.replace("_", " ").title() or "Card")
    return f"{brand} ••{method.last4}" if method.last4 else brand


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
        return _attempt_settle(locked, intent)


def _attempt_open(*, invoice_id: int) -> PaymentAttempt | None:
    """The pending attempt (a retry), or a new one committed before Stripe hears of it.

    None when nothing is due; an attempt already failed when there is no card.
    """
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update(of=("self",)).select_related("customer").filter(pk=invoice_id).first()
        return None if invoice is None else _attempt_take(invoice, now=timezone.now())


def _attempt_take(invoice: Invoice, *, now: datetime) -> PaymentAttempt | None:
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


def _attempt_settle(attempt: PaymentAttempt, intent: PaymentIntentInfo) -> ChargeResult:
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


# --- Dunning ---------------------------------------------------------------------------------


def invoices_dunning_claim(*, now: datetime | None = None) -> list[int]:
    """Hourly: claim every charge that is due and queue it, in one transaction.

    Due: an open invoice whose retry day has come, and an issued one that was never attempted
    (its charge task was lost). Each is locked with SKIP LOCKED and given its attempt in the same
    transaction (which clears its retry day), so a second run at the same time skips it, and a
    run after this one finds nothing due: each invoice is charged once. An attempt a crashed
    worker left pending is queued again; its row lock and the Stripe look-up keep it single.
    Returns the ids of the invoices queued or attempted.
    """
    now = now or timezone.now()
    never_attempted = ~Exists(PaymentAttempt.objects.filter(invoice=OuterRef("pk")))
    with transaction.atomic():
        due = (
            Invoice.objects.select_for_update(of=("self",), skip_locked=True).select_related("customer")
            .filter(status=Invoice.Status.OPEN)
            .filter(Q(next_charge_at__lte=now)
                    | Q(never_attempted, total__gt=0, issued_at__lt=now - UNATTEMPTED_AFTER))
            .order_by("pk")[:DUNNING_BATCH]
        )
        claimed = {invoice.pk: _attempt_take(invoice, now=now) for invoice in due}
        claimed = {pk: attempt for pk, attempt in claimed.items() if attempt is not None}
        stale = set(Invoice.objects.filter(
            status__in=CHARGEABLE, attempts__status=PaymentAttempt.Status.PENDING,
            attempts__created_at__lt=now - STALE_ATTEMPT,
        ).values_list("pk", flat=True)) - set(claimed)
        pending = [pk for pk, attempt in claimed.items() if attempt.status == PaymentAttempt.Status.PENDING]
        for invoice_id in sorted([*pending, *stale]):
            outbox.enqueue(tasks.invoice_charge, invoice_id=invoice_id)
    return sorted([*claimed, *stale])


# --- Webhook events --------------------------------------------------------------------------


def payment_intent_settle(*, intent: PaymentIntentInfo) -> str:
    """Stripe told us an intent's outcome: settle its attempt unless our own charge already did.

    Only an event that matches the attempt on record counts (intent id, Stripe customer, amount,
    currency); otherwise PaymentMismatch, and nothing changes. An event about nothing of ours
    (no attempt, not our Stripe customer) is "unknown invoice".
    """
    with transaction.atomic():
        attempt = _attempt_of_event(intent, lock=True)
        if attempt is None:
            if _customer_of_event(intent) is None:
                return "unknown invoice"
            raise PaymentMismatch(f"intent {intent.id} matches no payment attempt on record")
        differences = _event_differences(attempt, intent)
        if differences:
            raise PaymentMismatch(f"intent {intent.id} vs attempt {attempt.pk}: " + "; ".join(differences))
        if attempt.status != PaymentAttempt.Status.PENDING:
            return "already settled"
        return _attempt_settle(attempt, intent).outcome


def _attempt_of_event(intent: PaymentIntentInfo, *, lock: bool = False) -> PaymentAttempt | None:
    """The attempt the intent's metadata names, or else the one that recorded its id."""
    attempts = PaymentAttempt.objects.select_related("invoice__customer")
    if lock:
        attempts = attempts.select_for_update(of=("self",))
    if intent.invoice_id.isdigit() and intent.attempt_number.isdigit():
        named = attempts.filter(invoice_id=int(intent.invoice_id), number=int(intent.attempt_number)).first()
        if named is not None:
            return named
    return attempts.filter(stripe_payment_intent_id=intent.id).first() if intent.id else None


def _customer_of_event(intent: PaymentIntentInfo) -> Customer | None:
    """Whose event this is when no attempt matches: the invoice it names, or its Stripe customer."""
    if intent.invoice_id.isdigit():
        invoice = Invoice.objects.select_related("customer").filter(pk=int(intent.invoice_id)).first()
        if invoice is not None:
            return invoice.customer
    if intent.customer:
        return Customer.objects.filter(stripe_customer_id=intent.customer).first()
    return None


def _event_differences(attempt: PaymentAttempt, intent: PaymentIntentInfo) -> list[str]:
    # An attempt made before the customer field existed charged the customer's Stripe id.
    customer = attempt.stripe_customer_id or attempt.invoice.customer.stripe_customer_id
    wanted = {
        # The intent id is on record once Stripe answered; a lost answer leaves it to find.
        "intent": attempt.stripe_payment_intent_id or intent.id,
        "customer": customer or "(none on record)",
        "amount": amount_to_cents(attempt.amount),
        "currency": attempt.currency.lower(),
    }
    found = {"intent": intent.id, "customer": intent.customer, "amount": intent.amount_cents,
             "currency": intent.currency}
    return [f"{name} {found[name]!r} != {value!r}" for name, value in wanted.items() if found[name] != value]


@dataclass(frozen=True)
class PaymentMismatchFound:
    """What the reconciliation shows for one customer: what its attempts asked, what Stripe said."""

    customer_id: int
    invoice_id: int | None
    expected: Decimal
    found: Decimal


def payment_mismatches(*, start: datetime, end: datetime) -> list[PaymentMismatchFound]:
    """The mismatched payment events received in [start, end), summed per customer."""
    totals: dict[int, PaymentMismatchFound] = {}
    events = StripeEvent.objects.filter(status=StripeEvent.Status.MISMATCH, received_at__gte=start,
                                        received_at__lt=end).order_by("received_at", "pk")
    for event in events:
        intent = gateway.payment_intent_from_data(event.payload["data"]["object"])
        attempt = _attempt_of_event(intent)
        customer = attempt.invoice.customer if attempt else _customer_of_event(intent)
        if customer is None:
            continue
        before = totals.get(customer.pk, PaymentMismatchFound(customer.pk, None, Decimal("0.00"), Decimal("0.00")))
        totals[customer.pk] = PaymentMismatchFound(
            customer_id=customer.pk, invoice_id=attempt.invoice_id if attempt else before.invoice_id,
            expected=before.expected + (attempt.amount if attempt else Decimal("0.00")),
            found=before.found + Decimal(intent.amount_cents).scaleb(-2),
        )
    return list(totals.values())
