"""Celery tasks: webhook deliveries and their retries, alert emails, meter limits."""
from __future__ import annotations

from celery import shared_task

import outbox


# A POST ends at its 5 s deadline (outbound.TIMEOUT_SECONDS); these limits catch what the deadline
# cannot interrupt (name resolution, a stuck database). The soft one is recorded as a failed
# attempt (services.webhook_event_attempt); the hard one, and any kill, leaves the attempt's
# row as failed too. One attempt never outlives its claim on the event (services.CLAIM_SECONDS).
DELIVERY_LIMITS = dict(soft_time_limit=15, time_limit=25)


@shared_task(**DELIVERY_LIMITS)
def webhook_event_deliver(*, event_id: int) -> bool:
    from .services import webhook_event_attempt

    delivery = webhook_event_attempt(event_id=event_id)
    return delivery is not None and delivery.succeeded


@shared_task(**DELIVERY_LIMITS)
def webhook_event_resend(*, event_id: int) -> bool:
    from .services import webhook_event_attempt

    delivery = webhook_event_attempt(event_id=event_id, manual=True)
    return delivery is not None and delivery.succeeded


@shared_task
def webhook_retries_run() -> int:
    """Hand every event whose next attempt is due to a worker (the backoff lives in the database)."""
    from .services import webhook_events_due

    due = webhook_events_due()
    for event_id in due:
        webhook_event_deliver.delay(event_id=event_id)
    return len(due)


@shared_task
def webhook_events_prune() -> int:
    from .services import webhook_events_prune as prune

    return prune()


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def usage_alert_fire(*, customer_id: int, period: str, threshold_calls: int, month_calls: int) -> int:
    from .services import usage_alert_fire as fire

    return len(fire(customer_id=customer_id, period=period, threshold_calls=threshold_calls, month_calls=month_calls))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def usage_alert_email_send(*, alert_id: int) -> None:
    from .emails import usage_alert_email_send as send

    # The outbox may deliver a task twice; the receipt makes the second one a no-op.
    outbox.run_once(key=f"usage-alert-email:{alert_id}", work=lambda: send(alert_id=alert_id))


@shared_task
def usage_limits_sync(*, customer_id: int) -> None:
    from .services import usage_limits_sync as sync

    sync(customer_id=customer_id)


@shared_task
def usage_limits_sync_plan(*, plan_id: int) -> int:
    """A plan's included calls or prices changed in admin: every customer on it gets new limits."""
    from accounts.models import Customer

    from .services import usage_limits_sync as sync

    ids = list(Customer.objects.filter(plan_id=plan_id).values_list("pk", flat=True))
    for customer_id in ids:
        sync(customer_id=customer_id)
    return len(ids)


@shared_task
def usage_limits_refresh() -> int:
    """Beat, daily at 00:05 UTC: a day that starts a new run (the day after a plan change or a
    trial's end, every customer on the 1st) moves alert points and spend-cap ceilings, which are
    counted within the current run (notifications.selectors.usage_limits_plan)."""
    from .selectors import usage_limits_due

    ids = usage_limits_due()
    for customer_id in ids:
        usage_limits_sync.delay(customer_id=customer_id)
    return len(ids)
