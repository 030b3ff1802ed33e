"""python manage.py usage_reconcile --period 2026-11: compare counters, usage, invoices, charges."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dashboard.services import reconciliation_run


class Command(BaseCommand):
    help = "Compare Redis counters, Postgres usage, invoices and charges for a period; store each drift."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--period", default=None, help="YYYY-MM (UTC); default: this month")

    def handle(self, *args, period: str | None = None, **options) -> None:
        period = period or f"{timezone.now():%Y-%m}"
        try:
            result = reconciliation_run(period=period)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not result.redis_checked:
            self.stderr.write("Redis unreachable: counters not compared this run.")
        for drift in result.drifts:
            self.stdout.write(f"{drift.customer_id}\t{drift.source}\texpected {drift.expected}\tfound {drift.found}")
        self.stdout.write(f"{period}: {result.customers} customers checked, {len(result.drifts)} drifts.")
