"""What the lower apps announce, turned into alerts, webhook events and new meter limits.

Billing and accounts send their signals after their writes commit; metering sends its threshold
signal from the hot path, so that receiver only hands the work to Celery.
"""
from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

import outbox
from accounts.events import api_key_rotated
from accounts.models import Customer
from billing import signals as billing
from metering.events import usage_threshold_crossed
from plans.models import Plan

from . import payloads
from .models import WebhookEvent
from .services import usage_limits_sync, webhook_event_create
from .tasks import usage_alert_fire, usage_limits_sync_plan

Type = WebhookEvent.Type


@receiver(usage_threshold_crossed)
def on_usage_threshold_crossed(sender, customer_id: int, period: str, threshold_calls: int, month_calls: int, **kwargs) -> None:
    outbox.enqueue(usage_alert_fire, customer_id=customer_id, period=period,
                   threshold_calls=threshold_calls, month_calls=month_calls)


@receiver(post_save, sender=Customer)
def on_customer_saved(sender, instance: Customer, created: bool, **kwargs) -> None:
    # A new customer gets the default alerts; later plan changes arrive as plan_changed.
    if created and not kwargs.get("raw"):
        transaction.on_commit(lambda: usage_limits_sync(customer_id=instance.pk), robust=True)


@receiver(post_save, sender=Plan)
def on_plan_saved(sender, instance: Plan, created: bool, **kwargs) -> None:
    if not created and not kwargs.get("raw"):
        transaction.on_commit(lambda: usage_limits_sync_plan.delay(plan_id=instance.pk), robust=True)


@receiver(billing.plan_changed)
def on_plan_changed(sender, customer: Customer, change, **kwargs) -> None:
    usage_limits_sync(customer_id=customer.pk)
    webhook_event_create(customer_id=customer.pk, type=Type.PLAN_CHANGED, data=payloads.plan_changed_data(change))


@receiver(billing.invoice_issued)
def on_invoice_issued(sender, invoice, **kwargs) -> None:
    webhook_event_create(customer_id=invoice.customer_id, type=Type.INVOICE_ISSUED, data=payloads.invoice_data(invoice))


@receiver(billing.invoice_paid)
def on_invoice_paid(sender, invoice, **kwargs) -> None:
    webhook_event_create(customer_id=invoice.customer_id, type=Type.INVOICE_PAID, data=payloads.invoice_data(invoice))


@receiver(billing.invoice_payment_failed)
def on_invoice_payment_failed(sender, invoice, attempt=None, **kwargs) -> None:
    data = payloads.payment_failed_data(invoice, attempt)
    webhook_event_create(customer_id=invoice.customer_id, type=Type.INVOICE_PAYMENT_FAILED, data=data)


@receiver(billing.trial_ending)
def on_trial_ending(sender, customer: Customer, **kwargs) -> None:
    webhook_event_create(customer_id=customer.pk, type=Type.TRIAL_ENDING, data=payloads.trial_ending_data(customer))


@receiver(api_key_rotated)
def on_api_key_rotated(sender, key, **kwargs) -> None:
    webhook_event_create(customer_id=key.customer_id, type=Type.KEY_ROTATED, data=payloads.key_rotated_data(key))
