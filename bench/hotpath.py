"""Hot-path benchmark: bare DRF view vs metered view vs the seed's per-call sequence.

    make bench            (or: python bench/hotpath.py with DATABASE_URL/REDIS_URL set)

Starts gunicorn on this machine's loopback, drives it with wrk, and prints req/s, p50, p99
and the ratios, all measured side by side in one run. Rounds alternate the endpoints so a
noisy neighbour hurts each of them alike; the median round counts.
"""
from __future__ import annotations

import os
import re
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

DURATION = os.environ.get("BENCH_SECONDS", "8")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "16")
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "64"))
SERVERS = {
    "granian wsgi -w 2 (8 threads each)": ["granian"],
    "gunicorn sync -w 2": ["--workers", "2", "--worker-class", "sync"],
    "gunicorn sync -w 4": ["--workers", "4", "--worker-class", "sync"],
    "gunicorn gthread -w 2 -t 4": ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
}
if os.environ.get("BENCH_SERVERS"):
    SERVERS = {name: SERVERS[name] for name in os.environ["BENCH_SERVERS"].split(",")}


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


def wrk_script(raws: list[str], directory: Path) -> Path:
    """A wrk script that sends each request with the next customer's key."""
    path = directory / "keys.lua"
    keys = ", ".join(f'"{raw}"' for raw in raws)
    path.write_text(
        f"local keys = {{{keys}}}\nlocal i = 0\n"
        "request = function()\n  i = i + 1\n"
        '  return wrk.format(nil, nil, {["X-API-Key"] = keys[(i % #keys) + 1]})\nend\n'
    )
    path.chmod(0o600)
    return path


def wrk(url: str, script: Path) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url} answered {non2xx.group(1)} errors:\n{out}")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
            "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))}


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


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


def measure(server: str, script: Path, paths: list[str]) -> dict[str, dict]:
    from tests.servers import free_port, stop

    port = free_port()
    process = serve(SERVERS[server], port)
    try:
        for path in paths:  # warm-up: imports, key cache, script load
            wrk_quick = ["wrk", "-t1", "-c4", "-d1s", "-s", str(script), f"http://127.0.0.1:{port}{path}"]
            subprocess.run(wrk_quick, capture_output=True, check=True)
        runs = {path: [] for path in paths}
        for _ in range(ROUNDS):
            for path in paths:
                runs[path].append(wrk(f"http://127.0.0.1:{port}{path}", script))
        return {path: {k: statistics.median(r[k] for r in results) for k in ("rps", "p50", "p99")}
                for path, results in runs.items()}
    finally:
        stop(process)


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="tollbooth-bench-"))
    try:
        run(wrk_script(setup(), workdir))
    finally:
        shutil.rmtree(workdir)


def run(script: Path) -> None:
    print(f"{ROUNDS} rounds x {DURATION}s, wrk -t2 -c{CONNECTIONS}, {CUSTOMERS} customers' keys in turn, "
          f"on {os.cpu_count()} cores (median round)\n")
    print(f"{'server':28} {'endpoint':16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    results = {}
    for server in SERVERS:
        results[server] = measure(server, script, ["/bench/bare", "/bench/ping", "/bench/metered", "/bench/seed"])
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
