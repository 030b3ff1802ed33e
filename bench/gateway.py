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
from bench.hotpath import _ms, _wait_until_serving  # noqa: E402

# After that import (it names its own settings): the bench endpoints and the real /v1 routes.
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_gateway"

DURATION = os.environ.get("BENCH_SECONDS", "8")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
SLOW_CONNECTIONS = int(os.environ.get("BENCH_SLOW_CONNECTIONS", "200"))
SLOW_MS = 100
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "64"))
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


def wrk_scripts(keys: list[str], token: str, directory: Path) -> dict[str, Path]:
    """wrk scripts: each request with the next customer's key (as X-API-Key, or in a verify body)."""
    table = "local keys = {" + ", ".join(f'"{k}"' for k in keys) + "}\nlocal i = 0\n"
    scripts = {
        "key": table + "request = function()\n  i = i + 1\n"
                       '  return wrk.format(nil, nil, {["X-API-Key"] = keys[(i % #keys) + 1]})\nend\n',
        "verify": table + "request = function()\n  i = i + 1\n"
                          '  return wrk.format("POST", nil, {["Authorization"] = "Bearer ' + token + '", '
                          '["Content-Type"] = "application/json"}, '
                          "'{\"key\": \"' .. keys[(i % #keys) + 1] .. '\"}')\nend\n",
    }
    paths = {}
    for name, text in scripts.items():
        paths[name] = directory / f"{name}.lua"
        paths[name].write_text(text)
        paths[name].chmod(0o600)
    return paths


def wrk(url: str, script: Path, connections: int, duration: str = DURATION) -> dict:
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency",
         "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    failed = [m.group(0) for m in re.finditer(r"(Non-2xx or 3xx responses: \d+|Socket errors: .*)", out)]
    if failed:
        raise SystemExit(f"{url}: {'; '.join(failed)}\n{out}")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
            "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))}


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


def measure(cases: dict[str, tuple[str, Path, int]]) -> dict[str, dict]:
    for url, script, _connections in cases.values():  # warm-up: imports, key cache, pools, script load
        wrk(url, script, 4, duration="1")
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, (url, script, connections) in cases.items():
            runs[name].append(wrk(url, script, connections))
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
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install {tool}")
    from tests.servers import free_port, stop

    workdir = Path(tempfile.mkdtemp(prefix="tollbooth-bench-gateway-"))
    processes: list[subprocess.Popen] = []
    try:
        upstream_port, nginx_port, web_port = free_port(), free_port(), free_port()
        processes.append(upstream_start(upstream_port))
        keys, token = setup(upstream_port)
        scripts = wrk_scripts(keys, token, workdir)
        processes.append(nginx_start(nginx_port, upstream_port, workdir / "nginx"))
        args = procfile_web_args()
        processes.append(gunicorn_start(web_port, args))
        direct, nginx, gateway = (f"http://127.0.0.1:{p}" for p in (upstream_port, nginx_port, web_port))
        sanity(gateway, keys, token)
        print(f"{ROUNDS} rounds x {DURATION}s, wrk -t2, {CUSTOMERS} customers' keys in turn, on {os.cpu_count()} "
              f"cores (median round)\ngunicorn (Procfile web): {' '.join(args)}\n")
        key, verify = scripts["key"], scripts["verify"]
        results = measure({
            "direct 0ms": (f"{direct}/api/sleep/0", key, CONNECTIONS),
            "nginx 0ms": (f"{nginx}/v1/{SLUG}/sleep/0", key, CONNECTIONS),
            "gateway 0ms": (f"{gateway}/v1/{SLUG}/sleep/0", key, CONNECTIONS),
            "built-in /v1/geocode": (f"{gateway}/v1/geocode?q=Paris&limit=1", key, CONNECTIONS),
            "/v1/verify": (f"{gateway}/v1/verify", verify, CONNECTIONS),
            f"direct {SLOW_MS}ms": (f"{direct}/api/sleep/{SLOW_MS}", key, SLOW_CONNECTIONS),
            f"nginx {SLOW_MS}ms": (f"{nginx}/v1/{SLUG}/sleep/{SLOW_MS}", key, SLOW_CONNECTIONS),
            f"gateway {SLOW_MS}ms": (f"{gateway}/v1/{SLUG}/sleep/{SLOW_MS}", key, SLOW_CONNECTIONS),
        })
        report(results)
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
        d, n, g = (results[f"{who} {ms}ms"] for who in ("direct", "nginx", "gateway"))
        print(f"at {ms} ms, added over direct: gateway p50 {g['p50'] - d['p50']:+.2f} ms, p99 "
              f"{g['p99'] - d['p99']:+.2f} ms; nginx p50 {n['p50'] - d['p50']:+.2f} ms, p99 {n['p99'] - d['p99']:+.2f} ms")
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
