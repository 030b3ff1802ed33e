"""Each benchmark runs once, at its quick size (BENCH_QUICK=1), through its own make target, and
prints its figures: a change that breaks a bench fails the suite, not the next person who runs
it (README "Benchmarks").

Quick mode needs neither wrk nor nginx (bench/load.py drives the servers with a Python loop, and
the gateway bench leaves nginx's rows out when it is missing), so nothing here is skipped. The
benches run on the suite's own Postgres server and Redis database, in databases made for this
module: one migrated once and kept as a template, and a copy of it that the benches share as
they share var/bench under `make`.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django.db import connection

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"[\d.]+"

# target, the lines its output must hold
BENCHES = [
    ("bench", [rf"metered, 1 customer +{NUMBER} +{NUMBER} +{NUMBER}", rf"metered, 4 customers +{NUMBER} +{NUMBER}",
               rf"metered/bare = {NUMBER}x .* machine time = -?\d+ us/call .* p99 metered/bare = {NUMBER}x",
               rf"metered/seed = {NUMBER}x", r"\| Procfile web, leases on \| [\d,]+ \|"]),
    ("bench-gateway", [rf"gateway 100ms +\d+ +{NUMBER} +{NUMBER} +{NUMBER}",
                       rf"gateway 0 ms / built-in += {NUMBER}x", rf"/v1/verify / built-in += {NUMBER}x"]),
    ("bench-billing", [r"month close \d{4}-\d\d: ",
                       r"generate: \d+ batches of up to 10; SQL queries per batch: \d+-\d+",
                       r"issue: \d+ batches of up to 10; SQL queries per batch: \d+-\d+"]),
    ("bench-dashboard", [r"staff dashboard /dashboard/: median \d+ ms .* \d+ SQL queries",
                         r"customer portal /portal/: median \d+ ms",
                         r"customers CSV /dashboard/customers.csv: median"]),
    ("bench-products", [rf"\| {product} +\| .+ \| +{NUMBER} \| .+ \|" for product in ("text", "text body", "geocode",
                                                                                        "image")]),
]


def _server_url(database: str) -> str:
    """DATABASE_URL pointed at another database of the suite's Postgres server."""
    return urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{database}").geturl()


def _admin(sql: str) -> None:
    with psycopg.connect(_server_url("postgres"), autocommit=True) as admin:
        admin.execute(sql)


def _bench_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in ("DJANGO_SETTINGS_MODULE", "TEST_REDIS_DB", "MAKEFLAGS", "MAKELEVEL")}
    return {**env, "REDIS_URL": settings.REDIS_URL, "BENCH_QUICK": "1", **extra}


@pytest.fixture(scope="module")
def bench_databases():
    """(a migrated, empty template database, the benches' copy of it), dropped afterwards."""
    base = f"{connection.settings_dict['NAME']}_bench"
    template, shared = f"{base}_template", f"{base}_shared"
    names = (f"{shared}_dashboard", shared, template)  # bench/dashboard.py makes <its DATABASE_URL's>_dashboard
    for name in names:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{template}"')
    try:
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"], cwd=ROOT,
            env=_bench_env(DATABASE_URL=_server_url(template), DJANGO_SETTINGS_MODULE="bench.settings"),
            capture_output=True, text=True, timeout=300)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        _admin(f'CREATE DATABASE "{shared}" TEMPLATE "{template}"')
        yield template, shared
    finally:
        for name in names:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("target, figures", BENCHES, ids=[target for target, _ in BENCHES])
def test_each_bench_runs_at_its_quick_size_and_prints_its_figures(bench_databases, target, figures):
    template, shared = bench_databases
    result = subprocess.run(
        ["make", "--no-print-directory", target], cwd=ROOT,
        env=_bench_env(DATABASE_URL=_server_url(shared), BENCH_DB_TEMPLATE=template),
        capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    missing = [pattern for pattern in figures if not re.search(pattern, result.stdout)]
    assert not missing, f"{target} printed none of {missing}:\n{result.stdout[-4000:]}"
