"""Writing, sending and re-sending outbox rows, and once-only work under a receipt."""
from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any, Callable

from celery import Task, current_app
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from .models import OutboxTask, TaskReceipt

logger = logging.getLogger(__name__)

# What a publish raises when the broker cannot be reached (kombu wraps the client's errors).
BROKER_ERRORS = (OperationalError, OSError)
DRAIN_BATCH = 200


def outbox_task_enqueue(*, task: Task, kwargs: dict[str, Any]) -> OutboxTask:
    row = OutboxTask.objects.create(task=task.name, kwargs=kwargs)
    # robust: nothing that happens after the commit may turn the caller's answer into an error.
    transaction.on_commit(partial(outbox_task_send, outbox_id=row.pk), robust=True)
    return row


def outbox_task_send(*, outbox_id: int) -> bool:
    """Send one pending row now; False if it was not sent (broker down, or already taken)."""
    with transaction.atomic():
        row = (
            OutboxTask.objects.select_for_update(skip_locked=True)
            .filter(pk=outbox_id, sent_at__isnull=True)
            .first()
        )
        return row is not None and _publish(row)


def outbox_pending_send(*, limit: int = DRAIN_BATCH) -> int:
    """Send the oldest pending rows; rows another process is sending are skipped, not waited for."""
    sent = 0
    with transaction.atomic():
        rows = OutboxTask.objects.select_for_update(skip_locked=True).filter(sent_at__isnull=True)
        for row in rows.order_by("created_at")[:limit]:
            if not _publish(row):
                break  # the broker is still down: the rest would only time out too
            sent += 1
    return sent


def outbox_prune(*, sent_before: timedelta = timedelta(days=7), receipts_before: timedelta = timedelta(days=30)) -> int:
    now = timezone.now()
    rows, _ = OutboxTask.objects.filter(sent_at__lt=now - sent_before).delete()
    receipts, _ = TaskReceipt.objects.filter(done_at__lt=now - receipts_before).delete()
    return rows + receipts


def task_run_once(*, key: str, work: Callable[[], None]) -> bool:
    """Run `work` unless its receipt exists; the receipt commits only if `work` succeeded.

    A second delivery running at the same time blocks on the receipt's unique index until the
    first one ends, then finds the receipt (done) or takes over (the first one failed).
    """
    with transaction.atomic():
        _, created = TaskReceipt.objects.get_or_create(key=key)
        if created:
            work()
    return created


def _publish(row: OutboxTask) -> bool:
    row.attempts += 1
    try:
        _send(row.task, row.kwargs)
    except BROKER_ERRORS as exc:
        row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        row.save(update_fields=["attempts", "last_error"])
        logger.warning("outbox: could not send %s #%s (attempt %s): %s", row.task, row.pk, row.attempts, exc)
        return False
    row.sent_at = timezone.now()
    row.save(update_fields=["attempts", "sent_at"])
    return True


def _send(name: str, kwargs: dict[str, Any]) -> None:
    # A registered task honours its own options (and eager mode); an unknown one goes by name.
    task = current_app.tasks.get(name)
    if task is None:
        current_app.send_task(name, kwargs=kwargs)
    else:
        task.apply_async(kwargs=kwargs)
