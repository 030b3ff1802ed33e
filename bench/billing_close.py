"""Month-close benchmark: draft, number and issue a month of invoices for many customers.

    make bench-billing     (or: python bench/billing_close.py with DATABASE_URL/REDIS_URL set)

Loads BENCH_CUSTOMERS customers (10,000) with 30 days of usage each through COPY, a tenth of
them upgrading mid-month and a twentieth ending a trial in it, then runs the month close for the
previous month and prints its seconds and the SQL queries of each batch. The queries per batch
must not grow with the batch: the close costs a constant number of round trips per batch of
customers, not per customer. Charges and emails are queued (one task per batch), not run here.
BENCH_QUICK=1: 40 customers in batches of 10 (bench/load.py).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

from bench.load import knob  # noqa: E402

CUSTOMERS = knob("BENCH_CUSTOMERS", 10_000, 40)
BATCH = knob("BENCH_BATCH", 1_000, 10)


def setup(period: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from billing.models import Invoice

    if Invoice.objects.filter(period=period).exists():
        _reset()
    _load(period)


def _reset() -> None:
    """A rerun on the same bench database: start again from no customers (everything hangs off them)."""
    from django.db import connection

    from accounts.models import Customer

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Customer._meta.db_table} CASCADE")
        cursor.execute("DELETE FROM auth_user WHERE username LIKE 'close-%%'")
    print("dropped the previous run's customers")


def _load(period: str) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from accounts.models import Customer
    from core.periods import day_start, period_bounds
    from billing.models import PlanChange
    from plans.models import Plan
    from plans.services import terms_current

    start, end = period_bounds(period)
    plans = list(Plan.objects.filter(slug__in=["free", "starter", "pro", "enterprise"]).order_by("price"))
    terms = {plan.pk: terms_current(plan=plan) for plan in plans}  # bulk_create skips Customer.save
    run = os.urandom(3).hex()
    began = time.perf_counter()
    with transaction.atomic():
        users = get_user_model().objects.bulk_create([
            get_user_model()(username=f"close-{run}-{n}@example.com", email=f"close-{run}-{n}@example.com", password="!")
            for n in range(CUSTOMERS)
        ], batch_size=2000)
        created = day_start(start) - timedelta(days=40)
        customers = Customer.objects.bulk_create([
            Customer(owner=user, company=f"Close {n}", plan=plans[n % len(plans)], created_at=created,
                     terms=terms[plans[n % len(plans)].pk], signup_terms=terms[plans[n % len(plans)].pk],
                     trial_ends_at=day_start(start) + timedelta(days=9, hours=7) if n % 20 == 3 else None)
            for n, user in enumerate(users)
        ], batch_size=2000)
        PlanChange.objects.bulk_create([
            PlanChange(customer=c, from_plan=c.plan, to_plan=plans[-1], terms=terms[plans[-1].pk],
                       at=day_start(start) + timedelta(days=14, hours=5))
            for n, c in enumerate(customers) if n % 10 == 1 and c.plan != plans[-1]
        ], batch_size=2000)
        Customer.objects.filter(pk__in=[c.pk for n, c in enumerate(customers) if n % 10 == 1]).update(
            plan=plans[-1], terms=terms[plans[-1].pk])
        _usage_copy(connection, [c.pk for c in customers], start, (end - start).days)
    print(f"loaded {CUSTOMERS:,} customers x {(end - start).days} days of usage in {time.perf_counter() - began:.1f} s")


def _usage_copy(connection, customer_ids: list[int], start, days: int) -> None:
    from metering.models import UsageRecord

    now = datetime.now(dt_timezone.utc)
    table = UsageRecord._meta.db_table
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} (customer_id, product, day, calls, updated_at) FROM STDIN") as copy:
            for customer_id in customer_ids:
                for offset in range(days):
                    copy.write_row((customer_id, "geocode", start + timedelta(days=offset),
                                    (customer_id * 7919 + offset * 104729) % 40_000, now))


class QueryCounter:
    """Queries of the batch's own transaction, and those run after it commits (signal receivers)."""

    def __init__(self) -> None:
        self.inside = self.after = 0
        self.committed = False
        self.began = self.committed_at = time.perf_counter()

    def commit_seen(self) -> None:  # registered first, so it runs before the batch's own hooks
        self.committed = True
        self.committed_at = time.perf_counter()

    def __call__(self, execute, sql, params, many, context):
        if self.committed:
            self.after += 1
        else:
            self.inside += 1
        return execute(sql, params, many, context)


def measure(period: str) -> None:
    from django.db import connection, transaction

    from billing import invoicing, tasks
    from billing.models import Invoice, InvoiceLine

    per_batch: dict[str, list[tuple[int, int]]] = {"generate": [], "issue": []}
    seconds_split = {"generate": [0.0, 0.0], "issue": [0.0, 0.0]}

    def counted(name, function):
        def wrapper(**kwargs):
            counter = QueryCounter()
            with connection.execute_wrapper(counter), transaction.atomic():
                transaction.on_commit(counter.commit_seen)
                result = function(**kwargs)
            if name == "generate" or result:
                per_batch[name].append((counter.inside, counter.after))
                seconds_split[name][0] += counter.committed_at - counter.began
                seconds_split[name][1] += time.perf_counter() - counter.committed_at
            return result
        return wrapper

    phases: dict[str, float] = {}

    def timed(name, function):
        def wrapper(**kwargs):
            began = time.perf_counter()
            try:
                return function(**kwargs)
            finally:
                phases[name] = time.perf_counter() - began
        return wrapper

    invoicing_generate, invoicing_issue = invoicing.invoices_generate_batch, invoicing.invoices_issue_batch
    invoicing.invoices_generate_batch = counted("generate", invoicing_generate)
    invoicing.invoices_issue_batch = counted("issue", invoicing_issue)
    tasks.usage_flush_all = timed("flush", tasks.usage_flush_all)
    tasks.invoices_generate_all = timed("generate", tasks.invoices_generate_all)
    tasks.invoices_issue_all = timed("issue", tasks.invoices_issue_all)
    tasks.MONTH_CLOSE_BATCH = BATCH
    began = time.perf_counter()
    summary = tasks.month_close.run(period=period)
    seconds = time.perf_counter() - began
    invoicing.invoices_generate_batch, invoicing.invoices_issue_batch = invoicing_generate, invoicing_issue
    total = sum(Invoice.objects.filter(period=period).values_list("total", flat=True))
    print(f"month close {period}: {summary}")
    print(f"  {seconds:.1f} s for {CUSTOMERS:,} customers ({Invoice.objects.filter(period=period).count():,} invoices,"
          f" {InvoiceLine.objects.filter(invoice__period=period).count():,} lines, ${total:,} billed)")
    print("  phases: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()))
    for name, counts in per_batch.items():
        inside, after = [c[0] for c in counts], [c[1] for c in counts]
        print(f"  {name}: {len(counts)} batches of up to {BATCH:,}; SQL queries per batch: "
              f"{min(inside)}-{max(inside)} (median {statistics.median(inside):g}) in the batch,"
              f" plus {min(after)}-{max(after)} after its commit (the outbox hands the batch's task to the broker);"
              f" {seconds_split[name][0]:.1f} s in batches, {seconds_split[name][1]:.1f} s after their commits")
    print(f"  target: under 60 s -> {'met' if seconds < 60 else 'MISSED'}")


def main() -> None:
    from datetime import date

    today = date.today()
    last_month = today.replace(day=1) - timedelta(days=1)
    period = f"{last_month:%Y-%m}"
    setup(period)
    measure(period)


if __name__ == "__main__":
    main()
