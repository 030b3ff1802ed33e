"""Gateway benchmark: an upstream called directly, through Tollbooth's gateway and through nginx.

    make bench-gateway     (or: python bench/gateway.py with DATABASE_URL/REDIS_URL set)

Side by side in one run on this machine's loopback, all driven by wrk:
- the upstream (bench/upstream.py, /api/sleep/<ms>) called directly;
- the same through nginx as a plain reverse proxy (Debian's package; keep-alive to the upstream);
- the same through Tollbooth's gateway /v1/<slug>/sleep/<ms> (gunicorn started with the
  Procfile's `web` line: its worker class, threads and config);
- at 0 ms and at 100 ms upstream latency (BENCH_SLOW_CONNECTIONS connections, 200 by default);
- Tollbooth's own metered built-in view (/v1/geocode) and POST /v1/verify, on the same server.

Prints req/s, p50 and p99 of each, the latency the gateway and nginx add over a direct call,
and the ratios the issue sets as targets. Rounds alternate the endpoints (median round counts).
BENCH_QUICK=1 runs one short round with a Python load loop instead of wrk (bench/load.py), and
leaves nginx out when it is not installed.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.hotpath import _wait_until_serving  # noqa: E402
from bench.load import QUICK, Load, drive, knob, load_label  # noqa: E402

# After that import (it names its own settings): the bench endpoints and the real /v1 routes.
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_gateway"

DURATION = knob("BENCH_SECONDS", 8.0, 0.5)
WARM_UP_SECONDS = 1.0 if not QUICK else 0.2
ROUNDS = knob("BENCH_ROUNDS", 3, 1)
CONNECTIONS = knob("BENCH_CONNECTIONS", 16, 2)
SLOW_CONNECTIONS = knob("BENCH_SLOW_CONNECTIONS", 200, 4)
SLOW_MS = 100
CUSTOMERS = knob("BENCH_CUSTOMERS", 64, 4)
SLUG = "bench-upstream"


def setup(upstream_port: int) -> tuple[list[str], str]:
    """Customers' keys on a plan that sells geocode and the bench upstream, and the product's
    service token for /v1/verify."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.services import api_key_issue
    from plans.models import Plan, Product
    from plans.services import product_create, product_secrets_rotate, products_builtin_ensure
    from tests.factories import CustomerFactory

    products_builtin_ensure()
    base = f"http://127.0.0.1:{upstream_port}/api"
    product = Product.objects.filter(slug=SLUG).first()
    if product is None:
        product, token, _secret = product_create(slug=SLUG, name="Bench upstream", upstream_url=base,
                                                 methods="GET,POST", health_path="/")
    else:
        product.upstream_url = base
        product.save(update_fields=["upstream_url"])
        token, _secret = product_secrets_rotate(product)
    plan, _ = Plan.objects.update_or_create(slug="bench-gateway", defaults=dict(
        name="Bench gateway", price=0, included_calls=10**12, rate_per_minute=10**9, is_public=False,
        entitlements=["geocode", SLUG]))
    run = os.urandom(4).hex()
    keys = [api_key_issue(customer=CustomerFactory(plan=plan, owner__email=f"bench-gw-{run}-{n}@example.com"),
                          name="bench").raw for n in range(CUSTOMERS)]
    return keys, token


# --- the three servers ---


def procfile_web_args() -> list[str]:
    """The Procfile's `web` line after `gunicorn config.wsgi`, with its ${VAR:-default} expanded and
    the bind and access log left out (the bench binds its own port and logs errors only)."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))

    def expand(match: re.Match) -> str:
        return os.environ.get(match.group(1)) or (match.group(2) or "")

    words = shlex.split(re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", expand, line.split(":", 1)[1]))
    args, skip = [], False
    for word in words[words.index("config.wsgi") + 1:]:
        if skip:
            skip = False
        elif word in ("--bind", "-b", "--access-logfile"):
            skip = True
        else:
            args.append(word)
    return args


def gunicorn_start(port: int, args: list[str]) -> subprocess.Popen:
    from tests.servers import _wait_for_port

    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
               "--log-level", "error", *args]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, env=os.environ.copy())
    _wait_for_port(port, process)
    _wait_until_serving(f"http://127.0.0.1:{port}/bench/bare", workers=4)
    return process


def upstream_start(port: int) -> subprocess.Popen:
    from tests.servers import _wait_for_port

    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py"), str(port)],
                               cwd=ROOT, start_new_session=True)
    _wait_for_port(port, process)
    return process


NGINX_CONF = """\
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream api {{ server 127.0.0.1:{upstream}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port};
        location /v1/{slug}/ {{
            proxy_pass http://api/api/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-API-Key "";
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


def nginx_start(port: int, upstream: int, directory: Path) -> subprocess.Popen:
    """Debian's nginx in the foreground as our child, configured as a plain reverse proxy."""
    from tests.servers import _wait_for_port

    directory.mkdir()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        workers=os.cpu_count() or 1, dir=directory, upstream=upstream, port=port, slug=SLUG,
        # As root, nginx's workers would switch to nobody and could not use the temp directories.
        user="user root;" if os.geteuid() == 0 else ""))
    process = subprocess.Popen([shutil.which("nginx"), "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
                               start_new_session=True)
    _wait_for_port(port, process)
    return process


# --- the run ---


def measure(cases: dict[str, tuple[str, Load, Path | None, int]]) -> dict[str, dict]:
    for url, load, script, _connections in cases.values():  # warm-up: imports, key cache, pools, script load
        drive(url, load, connections=4, seconds=WARM_UP_SECONDS, script=script)
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, (url, load, script, connections) in cases.items():
            runs[name].append(drive(url, load, connections=connections, seconds=DURATION, script=script))
    return {name: {k: statistics.median(r[k] for r in results) for k in ("rps", "p50", "p99")}
            for name, results in runs.items()}


def sanity(gateway: str, keys: list[str], token: str) -> None:
    """One call of each kind answers as the bench expects, before anything is timed."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{gateway}/v1/{SLUG}/sleep/0", headers={"X-API-Key": keys[0]})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, response.status
    request = urllib.request.Request(f"{gateway}/v1/verify", data=json.dumps({"key": keys[0]}).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    if not answer.get("valid"):
        raise SystemExit(f"/v1/verify refused the bench key: {answer}")


def main() -> None:
    for tool in () if QUICK else ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install {tool} (or BENCH_QUICK=1 for a run without it)")
    with_nginx = bool(shutil.which("nginx"))
    from tests.servers import free_port, stop

    workdir = Path(tempfile.mkdtemp(prefix="tollbooth-bench-gateway-"))
    processes: list[subprocess.Popen] = []
    try:
        upstream_port, nginx_port, web_port = free_port(), free_port(), free_port()
        processes.append(upstream_start(upstream_port))
        keys, token = setup(upstream_port)
        key, verify = Load(keys=tuple(keys)), Load(keys=tuple(keys), service_token=token)
        key_script = None if QUICK else key.wrk_script(workdir / "key.lua")
        verify_script = None if QUICK else verify.wrk_script(workdir / "verify.lua")
        if with_nginx:
            processes.append(nginx_start(nginx_port, upstream_port, workdir / "nginx"))
        args = procfile_web_args()
        processes.append(gunicorn_start(web_port, args))
        direct, nginx, gateway = (f"http://127.0.0.1:{p}" for p in (upstream_port, nginx_port, web_port))
        sanity(gateway, keys, token)
        print(f"{ROUNDS} rounds x {DURATION:g}s, {load_label(CONNECTIONS)}, {CUSTOMERS} customers' keys in turn, "
              f"on {os.cpu_count()} cores (median round)\ngunicorn (Procfile web): {' '.join(args)}\n")
        if not with_nginx:
            print("nginx is not installed: its rows are left out\n")
        cases = {}
        for ms, connections in ((0, CONNECTIONS), (SLOW_MS, SLOW_CONNECTIONS)):
            cases[f"direct {ms}ms"] = (f"{direct}/api/sleep/{ms}", key, key_script, connections)
            if with_nginx:
                cases[f"nginx {ms}ms"] = (f"{nginx}/v1/{SLUG}/sleep/{ms}", key, key_script, connections)
            cases[f"gateway {ms}ms"] = (f"{gateway}/v1/{SLUG}/sleep/{ms}", key, key_script, connections)
            if ms == 0:
                cases["built-in /v1/geocode"] = (f"{gateway}/v1/geocode?q=Paris&limit=1", key, key_script, connections)
                cases["/v1/verify"] = (f"{gateway}/v1/verify", verify, verify_script, connections)
        report(measure(cases))
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def report(results: dict[str, dict]) -> None:
    print(f"{'endpoint':24} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        connections = SLOW_CONNECTIONS if name.endswith(f"{SLOW_MS}ms") else CONNECTIONS
        print(f"{name:24} {connections:5} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f}")
    print()
    for ms in (0, SLOW_MS):
        d, g = results[f"direct {ms}ms"], results[f"gateway {ms}ms"]
        line = (f"at {ms} ms, added over direct: gateway p50 {g['p50'] - d['p50']:+.2f} ms, "
                f"p99 {g['p99'] - d['p99']:+.2f} ms")
        if f"nginx {ms}ms" in results:
            n = results[f"nginx {ms}ms"]
            line += f"; nginx p50 {n['p50'] - d['p50']:+.2f} ms, p99 {n['p99'] - d['p99']:+.2f} ms"
        print(line)
    builtin = results["built-in /v1/geocode"]["rps"]
    fast, slow = results["gateway 0ms"]["rps"], results[f"gateway {SLOW_MS}ms"]["rps"]
    allowed = min(SLOW_CONNECTIONS / (SLOW_MS / 1000), fast)
    verify = results["/v1/verify"]["rps"]
    print()
    print(f"gateway 0 ms / built-in      = {fast / builtin:.2f}x (target >= 0.80)")
    print(f"gateway {SLOW_MS} ms / min({SLOW_CONNECTIONS}/{SLOW_MS / 1000:g} s, gateway 0 ms) = "
          f"{slow:.0f} / {allowed:.0f} = {slow / allowed:.2f}x (target >= 0.80)")
    print(f"/v1/verify / built-in        = {verify / builtin:.2f}x (target >= 0.90)")


if __name__ == "__main__":
    main()
