from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def usage_flush() -> dict:
    """Beat, every minute: Redis usage counters into Postgres (idempotent, see services)."""
    from core.redis import REDIS_UNAVAILABLE, redis_client

    from .services import usage_flush as flush

    try:
        redis_client().ping()  # the first connection to a restarted Redis fails on purpose
    except REDIS_UNAVAILABLE:
        pass  # still down: the lock below says so
    # One flusher at a time across workers; a second run would only wait on row locks.
    lock = redis_client().lock("tb:lock:usage-flush", timeout=300, blocking=False)
    if not lock.acquire():
        return {"skipped": "another flush is running"}
    try:
        report = flush()
    finally:
        lock.release()
    return {"customers": report.customers, "calls": report.calls, "batches_skipped": report.batches_skipped}
