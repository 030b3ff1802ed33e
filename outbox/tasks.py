from __future__ import annotations

from celery import shared_task


@shared_task
def outbox_drain() -> int:
    """Send what commits left pending while the broker was unreachable."""
    from .services import outbox_pending_send

    return outbox_pending_send()


@shared_task
def outbox_prune() -> int:
    from .services import outbox_prune as prune

    return prune()
