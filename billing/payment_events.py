"""Stripe's payment events: an event settles its attempt only when it matches it (intent,
customer, amount, currency); anything else is kept as a mismatch and summed per customer for
the nightly reconciliation (README "Billing")."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from accounts.models import Customer

from . import gateway
from .charging import attempt_settle
from .gateway import BillingError, PaymentIntentInfo, amount_to_cents
from .models import Invoice, PaymentAttempt, StripeEvent


class PaymentMismatch(BillingError):
    """A Stripe payment event that does not match the attempt on record: it settles nothing."""

    code = "payment_mismatch"


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
        return attempt_settle(attempt, intent).outcome


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
