"""Dashboard benchmark: the staff dashboard and the portal over a year of a real-sized book.

    make bench-dashboard     (or: python bench/dashboard.py with DATABASE_URL/REDIS_URL set)

Loads BENCH_CUSTOMERS customers (10,000) spread over the last year, BENCH_USAGE_ROWS usage
rows (1,000,000, through COPY, spread over each customer's life since signup), about one
plan change per customer (upgrades, downgrades, cancellations, trials ending on Free), and a
year of monthly invoices with their lines (COPY). Then it renders /dashboard/ as staff and
/portal/ as a customer with 90 days of usage on two keys, in process (Django's test client:
middleware, views, templates, no network), and prints the median server time and the SQL
queries of each page. Targets: /dashboard/ under 500 ms and 25 queries; /portal/ under 150 ms.
BENCH_QUICK=1: 60 customers, 3,000 usage rows, 2 rounds (bench/load.py).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

from bench.load import knob  # noqa: E402

CUSTOMERS = knob("BENCH_CUSTOMERS", 10_000, 60)
USAGE_ROWS = knob("BENCH_USAGE_ROWS", 1_000_000, 3_000)
ROUNDS = knob("BENCH_ROUNDS", 7, 2)
PRODUCTS = ("geocode", "text", "image")


def _copy(connection, table: str, columns: tuple[str, ...], rows) -> None:
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _change_of(n: int, plan, status: str, plans: dict) -> tuple | None:
    """About one plan change per customer: (plan before, reason), or None for a steady customer."""
    if status == "cancelled":
        return plan, "cancelled"
    if n % 4 == 0 and plan.slug != "free":
        return (plans["starter"] if plan.slug != "starter" else plans["free"]), "customer"  # an upgrade
    if n % 4 == 1 and plan.slug in ("starter", "pro"):
        return plans["enterprise"], "customer"  # a downgrade
    return None


def _customers(plans: dict, terms: dict, now: datetime) -> list:
    from django.contrib.auth import get_user_model

    from accounts.models import Customer

    run = os.urandom(3).hex()
    users = get_user_model().objects.bulk_create([
        get_user_model()(username=f"dash-{run}-{n}@example.com", email=f"dash-{run}-{n}@example.com", password="!")
        for n in range(CUSTOMERS)
    ], batch_size=2000)
    paid = [plans["starter"], plans["pro"], plans["enterprise"]]
    rows = []
    for n, user in enumerate(users):
        created = now - timedelta(days=365 - (n * 365) // CUSTOMERS, hours=n % 24)
        status, trial_ends = Customer.Status.ACTIVE, None
        if n % 10 == 0 and now - created < timedelta(days=14):
            status, trial_ends = Customer.Status.TRIAL, created + timedelta(days=14)
        elif n % 10 == 1:
            trial_ends = created + timedelta(days=14)  # a trial that converted
        elif n % 20 == 2:
            status = Customer.Status.PAST_DUE
        elif n % 20 == 7:
            status = Customer.Status.CANCELLED
        plan = plans["free"] if n % 9 == 4 else paid[n % 3]
        change = _change_of(n, plan, status, plans)
        first = change[0] if change else plan
        # bulk_create skips Customer.save(): the terms snapshots are set here.
        rows.append(Customer(owner=user, company=f"Dash {n}", plan=plan, status=status, trial_ends_at=trial_ends,
                             created_at=created, terms=terms[plan.pk], signup_terms=terms[first.pk]))
    return Customer.objects.bulk_create(rows, batch_size=2000)


def _plan_changes(customers: list, plans: dict, terms: dict, now: datetime) -> None:
    from billing.models import PlanChange

    changes = []
    for n, c in enumerate(customers):
        change = _change_of(n, c.plan, c.status, plans)
        if change is not None:
            middle = c.created_at + (now - c.created_at) / 2
            changes.append(PlanChange(customer=c, from_plan=change[0], to_plan=c.plan, terms=terms[c.plan.pk], at=middle,
                                      reason=change[1]))
    PlanChange.objects.bulk_create(changes, batch_size=5000)
    print(f"  {len(changes):,} plan changes")


def _invoices(connection, customers: list, now: datetime) -> None:
    from billing.models import Invoice, InvoiceLine

    today = now.date()
    periods = []
    for back in range(12, 0, -1):
        index = today.year * 12 + today.month - 1 - back
        periods.append(date(index // 12, index % 12 + 1, 1))
    invoice_rows, seq = [], 0
    for c in customers:
        for first in periods:
            if c.created_at.date() >= first or c.plan.price == 0:
                continue
            seq += 1
            status = "paid" if seq % 25 else ("open" if seq % 50 else "uncollectible")
            issued = datetime(first.year, first.month, 1, tzinfo=dt_timezone.utc) + timedelta(days=32)
            overage = Decimal(seq % 7 * 3) if seq % 5 == 0 else Decimal(0)
            total = c.plan.price + overage
            paid = status == "paid"
            invoice_rows.append((c.pk, f"{first:%Y-%m}", f"B-{seq:08d}", status, "USD", total, total, c.plan_id,
                                 0, False, issued, issued, issued if paid else None, "Visa ••4242" if paid else "",
                                 overage))
    _copy(connection, Invoice._meta.db_table,
          ("customer_id", "period", "number", "status", "currency", "subtotal", "total", "plan_id", "calls",
           "is_final", "created_at", "issued_at", "paid_at", "paid_by"), (row[:-1] for row in invoice_rows))
    ids = dict(((cid, period), pk) for pk, cid, period in Invoice.objects.values_list("pk", "customer_id", "period"))
    lines = []
    for cid, period, _, _, _, total, _, plan_id, *_, overage in invoice_rows:
        invoice_id = ids[(cid, period)]
        lines.append((invoice_id, "base", "Base fee", 1, total - overage, total - overage, plan_id, 0))
        if overage:
            lines.append((invoice_id, "overage", "Overage", 1, overage, overage, plan_id, 1))
    _copy(connection, InvoiceLine._meta.db_table,
          ("invoice_id", "kind", "description", "quantity", "unit_price", "amount", "plan_id", "position"), lines)
    print(f"  {len(invoice_rows):,} invoices, {len(lines):,} lines")


def _allot(customers: list, now: datetime) -> dict[int, int]:
    """USAGE_ROWS shared out: each customer at most one row per product and day since signup."""
    capacity = {c.pk: 3 * max(1, min(365, (now - c.created_at).days)) for c in customers}
    share, left = {}, USAGE_ROWS
    for n, c in enumerate(sorted(customers, key=lambda c: capacity[c.pk])):
        share[c.pk] = min(capacity[c.pk], left // (len(customers) - n))
        left -= share[c.pk]
    return share


def _usage(connection, customers: list, portal_keys: list[int], now: datetime) -> None:
    """Usage spread over each customer's life (up to a year); the portal's customer calls every
    day of the last 90 with all three products on two keys."""
    from metering.models import UsageRecord

    today = now.date()
    portal = customers[-1]
    share = _allot(customers[:-1], now)

    def rows():
        for c in customers[:-1]:
            span = max(1, min(365, (now - c.created_at).days))
            for i in range(share[c.pk]):
                day = today - timedelta(days=(i // 3) * span * 3 // share[c.pk] if share[c.pk] > 3 else 0)
                yield (c.pk, None, PRODUCTS[i % 3], day, (c.pk * 7919 + i * 104729) % 2_000 + 1, now)
        for offset in range(90):
            for n, product in enumerate(PRODUCTS):
                yield (portal.pk, portal_keys[(offset + n) % 2], product, today - timedelta(days=offset), 500 + n, now)

    _copy(connection, UsageRecord._meta.db_table, ("customer_id", "api_key_id", "product", "day", "calls", "updated_at"), rows())
    print(f"  {sum(share.values()) + 270:,} usage rows")


def _fresh_database() -> None:
    """A database of its own, made afresh: other benchmarks' rows (var/bench is shared) would
    skew the figures, and ours would trip theirs. Named after DATABASE_URL's, so two runs on
    different databases of one server never drop each other's."""
    from urllib.parse import urlsplit

    import psycopg

    url = urlsplit(os.environ["DATABASE_URL"])
    bench_db = url.path.lstrip("/") + "_dashboard"
    # BENCH_DB_TEMPLATE: an empty, migrated database to copy, so the migrations need not run again
    # (tests/test_bench_smoke.py).
    template = os.environ.get("BENCH_DB_TEMPLATE")
    with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{bench_db}"' + (f' TEMPLATE "{template}"' if template else ""))
    os.environ["DATABASE_URL"] = url._replace(path=f"/{bench_db}").geturl()


def setup():
    _fresh_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from accounts.services import api_key_issue
    from plans.services import terms_current
    from tests.factories import seeded_plan

    now = datetime.now(dt_timezone.utc)
    plans = {slug: seeded_plan(slug) for slug in ("free", "starter", "pro", "enterprise")}
    began = time.perf_counter()
    print(f"loading {CUSTOMERS:,} customers ...")
    with transaction.atomic():
        terms = {plan.pk: terms_current(plan=plan) for plan in plans.values()}
        customers = _customers(plans, terms, now)
        _plan_changes(customers, plans, terms, now)
        _invoices(connection, customers, now)
    portal = customers[-1]
    portal.created_at = now - timedelta(days=120)
    portal.save(update_fields=["created_at"])
    keys = [api_key_issue(customer=portal, name=name).key.pk for name in ("prod", "staging")]
    with transaction.atomic():
        _usage(connection, customers, keys, now)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"loaded in {time.perf_counter() - began:.1f} s")
    staff = get_user_model().objects.create_user(username=f"staff-{os.urandom(3).hex()}", password="!", is_staff=True)
    return staff, portal.owner


def measure(name: str, user, path: str, target_ms: float, target_queries: int | None) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", secure=True)
    client.force_login(user)
    assert client.get(path).status_code == 200  # warm: templates compiled, connections open
    times, cpu, queries = [], [], []
    for _ in range(ROUNDS):
        with CaptureQueriesContext(connection) as captured:
            began, began_cpu = time.perf_counter(), time.process_time()
            response = client.get(path)
            if response.streaming:
                b"".join(response.streaming_content)
            times.append((time.perf_counter() - began) * 1000)
            cpu.append((time.process_time() - began_cpu) * 1000)
        assert response.status_code == 200, response.status_code
        queries.append(len(captured))
    median = statistics.median(times)
    verdict = "met" if median < target_ms and (target_queries is None or max(queries) < target_queries) else "MISSED"
    print(f"{name} {path}: median {median:.0f} ms (min {min(times):.0f}, max {max(times):.0f}) over {ROUNDS} runs"
          f" (web process CPU {statistics.median(cpu):.0f} ms), {max(queries)} SQL queries; target < {target_ms:.0f} ms"
          f"{f' and < {target_queries} queries' if target_queries else ''} -> {verdict}")


def measure_cold(user) -> None:
    """The first view of the day computes the settled days' usage sums the later ones read."""
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", secure=True)
    client.force_login(user)
    cache.clear()
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        assert client.get("/dashboard/").status_code == 200
    print(f"staff dashboard /dashboard/, first view of the day (settled usage not cached yet):"
          f" {(time.perf_counter() - began) * 1000:.0f} ms, {len(captured)} SQL queries")


def main() -> None:
    staff, owner = setup()
    from django.conf import settings

    settings.ROOT_URLCONF = "config.urls"  # bench.settings serves only the hot-path endpoints
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    measure_cold(staff)
    measure("staff dashboard", staff, "/dashboard/", 500, 25)
    measure("customer portal", owner, "/portal/", 150, None)
    measure("customers CSV", staff, "/dashboard/customers.csv", 2000, None)
    _drop_database()


def _drop_database() -> None:
    from urllib.parse import urlsplit

    import psycopg
    from django.db import connections

    connections.close_all()
    url = urlsplit(os.environ["DATABASE_URL"])  # _fresh_database's
    with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.path.lstrip("/")}" WITH (FORCE)')


if __name__ == "__main__":
    main()
