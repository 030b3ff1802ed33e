"""Hot-path benchmark: bare DRF view vs metered view vs the seed's per-call sequence.

    make bench            (or: python bench/hotpath.py with DATABASE_URL/REDIS_URL set)

Starts gunicorn on this machine's loopback, drives it with wrk, and prints req/s, p50, p99
and the ratios, all measured side by side in one run. Rounds alternate the endpoints so a
noisy neighbour hurts each of them alike; the median round counts. BENCH_QUICK=1 runs one
short round on one server with a Python load loop instead of wrk (bench/load.py).
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

from bench.load import QUICK, Load, drive, knob, load_label  # noqa: E402

DURATION = knob("BENCH_SECONDS", 8.0, 0.5)
WARM_UP_SECONDS = 1.0 if not QUICK else 0.2
ROUNDS = knob("BENCH_ROUNDS", 3, 1)
CONNECTIONS = knob("BENCH_CONNECTIONS", 16, 2)
CUSTOMERS = knob("BENCH_CUSTOMERS", 64, 4)
SERVERS = {
    "granian wsgi -w 2 (8 threads each)": ["granian"],
    "gunicorn sync -w 2": ["--workers", "2", "--worker-class", "sync"],
    "gunicorn sync -w 4": ["--workers", "4", "--worker-class", "sync"],
    "gunicorn gthread -w 2 -t 4": ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
}
if os.environ.get("BENCH_SERVERS") or QUICK:
    chosen = os.environ.get("BENCH_SERVERS") or "gunicorn sync -w 2"
    SERVERS = {name: SERVERS[name] for name in chosen.split(",")}


def setup() -> list[str]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.services import api_key_issue
    from plans.models import Plan
    from tests.factories import CustomerFactory

    plan, _ = Plan.objects.update_or_create(slug="bench", defaults=dict(
        name="Bench", price=0, included_calls=10**12, rate_per_minute=10**9, is_public=False,
        entitlements=["geocode"]))
    # Many customers, as in production: each one's rate window holds its own traffic only.
    run = os.urandom(4).hex()
    return [api_key_issue(customer=CustomerFactory(plan=plan, owner__email=f"bench-{run}-{n}@example.com"),
                          name="bench").raw for n in range(CUSTOMERS)]


def serve(args: list[str], port: int) -> subprocess.Popen:
    from tests.servers import _wait_for_port

    if args == ["granian"]:
        command = [str(Path(sys.executable).parent / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "2", "--blocking-threads", "8", "--log-level", "error",
                   "config.wsgi:application"]
    else:
        command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
                   "--log-level", "error", *args]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True,
                               env={**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"})
    _wait_for_port(port, process)
    _wait_until_serving(f"http://127.0.0.1:{port}/bench/bare", workers=4)
    return process


def _wait_until_serving(url: str, *, workers: int, timeout: float = 120) -> None:
    """The port opens before the workers have booted Django; wait for real answers from several
    connections, or the first measured seconds would time the boot, not the server."""
    import urllib.request

    deadline, answered = time.monotonic() + timeout, 0
    while answered < workers * 4 and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                answered += response.status == 200
        except OSError:
            time.sleep(0.2)


def measure(server: str, load: Load, script: Path | None, paths: list[str]) -> dict[str, dict]:
    from tests.servers import free_port, stop

    port = free_port()
    process = serve(SERVERS[server], port)
    try:
        for path in paths:  # warm-up: imports, key cache, script load
            drive(f"http://127.0.0.1:{port}{path}", load, connections=4, seconds=WARM_UP_SECONDS, script=script)
        runs = {path: [] for path in paths}
        for _ in range(ROUNDS):
            for path in paths:
                runs[path].append(drive(f"http://127.0.0.1:{port}{path}", load, connections=CONNECTIONS,
                                        seconds=DURATION, script=script))
        return {path: {k: statistics.median(r[k] for r in results) for k in ("rps", "p50", "p99")}
                for path, results in runs.items()}
    finally:
        stop(process)


def main() -> None:
    if not QUICK and not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk (or BENCH_QUICK=1 for a run without it)")
    workdir = Path(tempfile.mkdtemp(prefix="tollbooth-bench-"))
    try:
        load = Load(keys=tuple(setup()))
        run(load, None if QUICK else load.wrk_script(workdir / "keys.lua"))
    finally:
        shutil.rmtree(workdir)


def run(load: Load, script: Path | None) -> None:
    print(f"{ROUNDS} rounds x {DURATION:g}s, {load_label(CONNECTIONS)}, {CUSTOMERS} customers' keys in turn, "
          f"on {os.cpu_count()} cores (median round)\n")
    print(f"{'server':28} {'endpoint':16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    results = {}
    for server in SERVERS:
        results[server] = measure(server, load, script, ["/bench/bare", "/bench/ping", "/bench/metered", "/bench/seed"])
        for path, r in results[server].items():
            print(f"{server:28} {path:16} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f}")
    print()
    for server, r in results.items():
        bare, ping, metered, seed = (r[p]["rps"] for p in ("/bench/bare", "/bench/ping", "/bench/metered", "/bench/seed"))
        print(f"{server}: metered/bare = {metered / bare:.2f}x (target >= 0.70), "
              f"metered/seed = {metered / seed:.2f}x (target >= 1.5), "
              f"bare+1 PING/bare = {ping / bare:.2f}x (floor for one round trip)")


if __name__ == "__main__":
    main()
