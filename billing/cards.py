"""The card on file: saved through Stripe's SetupIntent (the billing page, or Stripe's webhook),
once per card, and a new card makes every failed charge due again (README "Billing"). Removing
it detaches it at Stripe; a plan that needs a card then ends at the period's end (README
"Customer portal")."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Customer

from . import gateway
from .charging import charges_retry_now, stripe_customer_ensure
from .gateway import BillingError, SetupIntentInfo, StripeNotFound
from .models import PaymentMethod
from .scheduled_ends import ScheduledEnd, card_added_unschedule, card_removed_schedule
from .subscriptions import trial_card_check


class CardSetupFailed(BillingError):
    """The card could not be saved."""

    code = "card_setup_failed"


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
        card_added_unschedule(customer=customer)
        charges_retry_now(customer=customer)
        return method



def card_remove(*, customer: Customer) -> ScheduledEnd | None:
    """Detach the card at Stripe and forget it; returns the end this schedules for a plan that
    needs a card (None when the plan needs none)."""
    method = PaymentMethod.objects.filter(customer=customer).first()
    if method is None:
        raise ValidationError("There is no card on file.", code="no_card")
    try:
        gateway.payment_method_detach(payment_method_id=method.stripe_payment_method_id)
    except StripeNotFound:
        pass  # Stripe no longer knows the card: nothing left to detach
    with transaction.atomic():
        Customer.objects.select_for_update().filter(pk=customer.pk).first()
        # By its Stripe id: a card saved meanwhile (another tab) stays on file.
        PaymentMethod.objects.filter(pk=method.pk, stripe_payment_method_id=method.stripe_payment_method_id).delete()
        if PaymentMethod.objects.filter(customer=customer).exists():
            return None
        return card_removed_schedule(customer=customer)
