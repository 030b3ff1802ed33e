"""Hot-path benchmark: bare DRF view vs metered view vs the seed's per-call sequence.

    make bench            (or: python bench/hotpath.py with DATABASE_URL/REDIS_URL set)

Starts the Procfile's web server (its `web` line and config/gunicorn.py) on this machine's
loopback, once with quota leases off and once on (METERING_LEASES in the server's environment),
drives it with wrk, and prints req/s, p50, p99 and the figures of README "Benchmarks", all
measured side by side in one run: the bare view, the bare view plus one Redis PING, the metered
view for one high-volume customer (one key, a plan whose limits the bench never reaches) and for
64 customers' keys in turn, and the seed's sequence. Rounds alternate the endpoints so a noisy
neighbour hurts each of them alike (many short rounds rather than a few long ones, for a machine
that is not quiet); the median round counts, and the targets' ratios are each round's bare and
metered runs, seconds apart, taken as the median over rounds (see `paired`). A run counts only
if its keep-alive connections split evenly enough over the server's worker processes (see
`balanced_drive`); otherwise it is run again. BENCH_SERVERS picks other servers
(names of SERVERS separated by ';'). BENCH_QUICK=1 runs one short round on one server with a
Python load loop instead of wrk (bench/load.py).
"""
from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

from bench.load import QUICK, Load, drive, knob, load_label  # noqa: E402

DURATION = knob("BENCH_SECONDS", 5.0, 0.5)
WARM_UP_SECONDS = 1.0 if not QUICK else 0.2
ROUNDS = knob("BENCH_ROUNDS", 5, 1)
CONNECTIONS = knob("BENCH_CONNECTIONS", 16, 2)
CUSTOMERS = knob("BENCH_CUSTOMERS", 64, 4)
PROCFILE = "Procfile web"  # the `web` line as it stands, so the bench follows the deployment
# A run whose connections split more unevenly than this over two worker processes (10/6 of 16) is
# run again, at most SPLIT_ATTEMPTS times (see balanced_drive).
SPLIT_SPREAD = max(1, CONNECTIONS // 4)
SPLIT_ATTEMPTS = 6 if not QUICK else 1  # a quick run shows the bench works, not how fast
# name: (server command or its arguments, extra environment for the server)
SERVERS = {
    "Procfile web, leases off": (PROCFILE, {"METERING_LEASES": "false"}),
    "Procfile web, leases on": (PROCFILE, {"METERING_LEASES": "true"}),
    "granian wsgi -w 2 (8 threads each)": (["granian"], {}),
    "gunicorn sync -w 2": (["--workers", "2", "--worker-class", "sync"], {}),
    "gunicorn sync -w 4": (["--workers", "4", "--worker-class", "sync"], {}),
    "gunicorn gthread -w 2 -t 4": (["--workers", "2", "--worker-class", "gthread", "--threads", "4"], {}),
}
DEFAULT_SERVERS = "Procfile web, leases off;Procfile web, leases on"
QUICK_SERVERS = "Procfile web, leases on"
SERVERS = {name: SERVERS[name] for name in
           (os.environ.get("BENCH_SERVERS") or (QUICK_SERVERS if QUICK else DEFAULT_SERVERS)).split(";")}


def setup() -> tuple[list[str], str]:
    """(CUSTOMERS customers' keys, one high-volume customer's key), all on a plan whose limits
    the bench never reaches."""
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
    keys = [api_key_issue(customer=CustomerFactory(plan=plan, owner__email=f"bench-{run}-{n}@example.com"),
                          name="bench").raw for n in range(CUSTOMERS + 1)]
    return keys[:-1], keys[-1]


def procfile_web(port: int) -> list[str]:
    """The Procfile's `web` command on `port`, run by this interpreter."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    words = shlex.split(line.removeprefix("web:").replace("$PORT", str(port)))
    assert words[0] == "gunicorn", line
    # Its error log at warning: the workers' boot lines would bury the figures.
    return [sys.executable, "-m", "gunicorn", *words[1:], "--log-level", "warning"]


def serve(args: list[str] | str, env: dict[str, str], port: int) -> subprocess.Popen:
    from tests.servers import _wait_for_port

    if args == PROCFILE:
        command = procfile_web(port)
    elif args == ["granian"]:
        command = [str(Path(sys.executable).parent / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "2", "--blocking-threads", "8", "--log-level", "error",
                   "config.wsgi:application"]
    else:
        command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
                   "--log-level", "error", *args]
    # The access log (the Procfile writes one to stdout) is part of what a call costs; not kept.
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                               env={**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", **env})
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


@dataclass(frozen=True)
class Endpoint:
    label: str
    path: str
    load: Load
    script: Path | None


def endpoints(load: Load, high_volume: Load, workdir: Path | None) -> list[Endpoint]:
    many = None if workdir is None else load.wrk_script(workdir / "keys.lua")
    one = None if workdir is None else high_volume.wrk_script(workdir / "key.lua")
    # The metered run right after the bare one: the targets are their ratios, taken per round.
    return [Endpoint(BARE, "/bench/bare", load, many), Endpoint(METERED_ONE, "/bench/metered", high_volume, one),
            Endpoint(PING, "/bench/ping", load, many),
            Endpoint(METERED_MANY, "/bench/metered", load, many), Endpoint(SEED, "/bench/seed", load, many)]


BARE, PING, SEED = "bare", "bare + 1 PING", "seed sequence"
PAIRED = "paired"  # the targets' figures, per round (see `paired`)
METERED_ONE, METERED_MANY = "metered, 1 customer", f"metered, {CUSTOMERS} customers"


def measure(server: str, points: list[Endpoint]) -> dict[str, dict]:
    from tests.servers import free_port, stop

    port = free_port()
    args, env = SERVERS[server]
    process = serve(args, env, port)
    try:
        for point in points:  # warm-up: imports, key cache, script load
            drive(f"http://127.0.0.1:{port}{point.path}", point.load, connections=4, seconds=WARM_UP_SECONDS,
                  script=point.script)
        runs = {point.label: [] for point in points}
        for _ in range(ROUNDS):
            for point in points:
                runs[point.label].append(balanced_drive(f"http://127.0.0.1:{port}{point.path}", point, process, port))
        summary = {label: {k: statistics.median(r[k] for r in results) for k in ("rps", "p50", "p99")}
                   for label, results in runs.items()}
        for label, results in runs.items():
            summary[label]["rerun"] = sum(r["rerun"] for r in results)
            summary[label]["splits"] = [r["split"] for r in results]
        summary[PAIRED] = paired(runs[BARE], runs[METERED_ONE])
        return summary
    finally:
        stop(process)


def balanced_drive(url: str, point: Endpoint, process: subprocess.Popen, port: int) -> dict:
    """One measured run whose connections are spread over the server's worker processes.

    Which process accepts a keep-alive connection is a race (both wait on the one listening
    socket), and wrk's connections stay where they landed for the whole run: a 15/1 split leaves
    one process doing nearly all the work, GIL-bound on one core, and the run measures that luck
    instead of the endpoint (measured here: bare and metered alike fell to about half). So the split
    is read a moment into the run, and a run whose split is more uneven than SPLIT_SPREAD is run
    again, at most SPLIT_ATTEMPTS times (the last one counts then, its split printed)."""
    for attempt in range(SPLIT_ATTEMPTS):
        split: list[int] = []
        reader = threading.Timer(min(1.0, DURATION / 3), lambda: split.extend(connection_split(process, port)))
        reader.start()
        result = drive(url, point.load, connections=CONNECTIONS, seconds=DURATION, script=point.script)
        reader.join()
        result["split"], result["rerun"] = split, attempt
        if len(split) < 2 or max(split) - min(split) <= SPLIT_SPREAD:
            break
    return result


def connection_split(process: subprocess.Popen, port: int) -> list[int]:
    """Established connections on `port` held by each worker process of the server."""
    counts = []
    for worker in psutil.Process(process.pid).children():
        try:
            counts.append(sum(1 for c in worker.net_connections(kind="tcp")
                              if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port))
        except psutil.Error:
            continue
    return sorted(counts, reverse=True)


def main() -> None:
    if not QUICK and not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk (or BENCH_QUICK=1 for a run without it)")
    workdir = Path(tempfile.mkdtemp(prefix="tollbooth-bench-"))
    try:
        keys, high_volume = setup()
        run(endpoints(Load(keys=tuple(keys)), Load(keys=(high_volume,)), None if QUICK else workdir))
    finally:
        shutil.rmtree(workdir)


def run(points: list[Endpoint]) -> None:
    print(f"{ROUNDS} rounds x {DURATION:g}s, {load_label(CONNECTIONS)}, on {os.cpu_count()} cores (median round); "
          f"'{METERED_ONE}': one key of a plan whose limits the bench never reaches, "
          f"'{METERED_MANY}': {CUSTOMERS} customers' keys in turn\n")
    print(f"{'server':36} {'endpoint':24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}   connections per process")
    results = {}
    for server in SERVERS:
        results[server] = measure(server, points)
        for label, r in ((point.label, results[server][point.label]) for point in points):
            splits = " ".join("/".join(map(str, split)) for split in r["splits"] if split)
            print(f"{server:36} {label:24} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f}   "
                  f"splits {splits or '-'}, {r['rerun']} run(s) again")
    print()
    print("| server | bare | bare + 1 PING | metered, 1 customer | metered/bare (>= 0.9) "
          "| metering's machine time per call, us (<= 45) | p99 metered/bare (<= 1.5) "
          f"| metered, {CUSTOMERS} customers | seed sequence | metered/seed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for server, r in results.items():
        print(f"| {server} | " + " | ".join(figures(r)) + " |")
    print()
    for server, r in results.items():
        bare, ping, one, many, seed = (r[label]["rps"] for label in (BARE, PING, METERED_ONE, METERED_MANY, SEED))
        pair = r[PAIRED]
        print(f"{server}: metered/bare = {pair['ratio']:.2f}x (target >= 0.9), "
              f"machine time = {pair['machine_us']:.0f} us/call (target <= 45), "
              f"p99 metered/bare = {pair['p99_ratio']:.2f}x (target <= 1.5), "
              f"{CUSTOMERS} customers: metered/bare = {many / bare:.2f}x, metered/seed = {many / seed:.2f}x, "
              f"bare+1 PING/bare = {ping / bare:.2f}x (floor for one round trip); "
              f"metered/bare per round: {pair['rounds']}")


def paired(bare: list[dict], metered: list[dict]) -> dict[str, float | str]:
    """The three targets' figures, each the median over rounds of that round's bare and metered
    runs (seconds apart), so a neighbour's load that comes and goes between rounds cancels out
    instead of landing on one side of the ratio."""
    rounds = list(zip(bare, metered))
    return {
        "ratio": statistics.median(m["rps"] / b["rps"] for b, m in rounds),
        "machine_us": statistics.median(machine_us(m["rps"], b["rps"]) for b, m in rounds),
        "p99_ratio": statistics.median(m["p99"] / b["p99"] for b, m in rounds),
        "rounds": " ".join(f"{m['rps'] / b['rps']:.2f}" for b, m in rounds),
    }


def machine_us(metered: float, bare: float) -> float:
    """Metering's machine time per call: what a metered call costs the machine beyond a bare one,
    at full load (1/metered - 1/bare seconds)."""
    return (1 / metered - 1 / bare) * 1e6


def figures(r: dict[str, dict]) -> list[str]:
    bare, ping, one, many, seed = (r[label]["rps"] for label in (BARE, PING, METERED_ONE, METERED_MANY, SEED))
    pair = r[PAIRED]
    return [f"{bare:,.0f}", f"{ping:,.0f}", f"{one:,.0f}", f"{pair['ratio']:.2f}x", f"{pair['machine_us']:.0f}",
            f"{pair['p99_ratio']:.2f}x", f"{many:,.0f}", f"{seed:,.0f}", f"{many / seed:.2f}x"]


if __name__ == "__main__":
    main()
