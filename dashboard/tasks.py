"""The dashboard's Celery tasks."""
from __future__ import annotations

from celery import shared_task
from django.utils import timezone


@shared_task
def usage_reconcile_nightly() -> int:
    """Last month (closed: invoices and charges too) and this month so far; returns the drifts.
    Then it sums the day's settled usage for the dashboard, so no staff member waits for it."""
    from .figures import month_start
    from .services import reconciliation_run
    from .usage_stats import call_stats

    now = timezone.now()
    periods = [f"{month_start(now.date(), 1):%Y-%m}", f"{now:%Y-%m}"]
    drifts = sum(len(reconciliation_run(period=period).drifts) for period in periods)
    call_stats(now=now)
    return drifts
