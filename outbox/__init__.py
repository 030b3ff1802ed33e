"""Durable Celery sends: a task asked for inside a transaction survives a broker outage.

`enqueue(task, **kwargs)` writes an `OutboxTask` row in the caller's transaction and, once it
commits, hands the task to the broker. If the broker is down the row stays pending and the
`outbox_drain` beat task sends it later. A task may therefore arrive twice (a send that timed
out but reached the broker, a redelivery after a worker crash): work that must happen once
goes through `run_once(key=..., work=...)`.

This app sits below every other one and imports none of them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from celery import Task

    from .models import OutboxTask


def enqueue(task: Task, /, **kwargs: Any) -> OutboxTask:
    from .services import outbox_task_enqueue

    return outbox_task_enqueue(task=task, kwargs=kwargs)


def run_once(*, key: str, work: Callable[[], None]) -> bool:
    from .services import task_run_once

    return task_run_once(key=key, work=work)
