from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def usage_flush() -> dict:
    """Beat, every minute: Redis usage counters into Postgres (idempotent, see services)."""
    from django_redis import get_redis_connection

    from .services import usage_flush as flush

    # One flusher at a time across workers; a second run would only wait on row locks.
    lock = get_redis_connection("default").lock("tb:lock:usage-flush", timeout=300, blocking=False)
    if not lock.acquire():
        return {"skipped": "another flush is running"}
    try:
        report = flush()
    finally:
        lock.release()
    return {"customers": report.customers, "calls": report.calls, "batches_skipped": report.batches_skipped}
