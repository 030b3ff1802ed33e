"""What the HTTP benchmarks share: their size knobs and the load that drives a server.

Sizes: each bench's own variables (BENCH_SECONDS, BENCH_CUSTOMERS, ...) with its full size by
default; BENCH_QUICK=1 turns every one of them tiny, which is how the test suite runs each bench
once (tests/test_bench_smoke.py). A variable set on its own still wins.

Load: wrk at full size. In quick mode a small Python loop instead, so no wrk is needed: it is
far slower than the servers it drives, so its figures show that the bench runs, not how fast
anything is.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


def knob(name: str, full: int | float, quick: int | float) -> int | float:
    """The variable `name` if set, else the quick or the full size."""
    raw = os.environ.get(name)
    if raw:
        return type(full)(raw)
    return quick if QUICK else full


@dataclass(frozen=True)
class Load:
    """Each request with the next customer's key: in X-API-Key, or (with a product's service
    token) in the JSON body of POST /v1/verify."""

    keys: tuple[str, ...]
    service_token: str | None = None

    def request(self, n: int) -> tuple[str, dict[str, str], bytes | None]:
        key = self.keys[n % len(self.keys)]
        if self.service_token is None:
            return "GET", {"X-API-Key": key}, None
        headers = {"Authorization": f"Bearer {self.service_token}", "Content-Type": "application/json"}
        return "POST", headers, json.dumps({"key": key}).encode()

    def wrk_script(self, path: Path) -> Path:
        table = "local keys = {" + ", ".join(f'"{k}"' for k in self.keys) + "}\nlocal i = 0\n"
        if self.service_token is None:
            call = '  return wrk.format(nil, nil, {["X-API-Key"] = keys[(i % #keys) + 1]})\n'
        else:
            call = ('  return wrk.format("POST", nil, {["Authorization"] = "Bearer ' + self.service_token + '", '
                    '["Content-Type"] = "application/json"}, '
                    "'{\"key\": \"' .. keys[(i % #keys) + 1] .. '\"}')\n")
        path.write_text(table + "request = function()\n  i = i + 1\n" + call + "end\n")
        path.chmod(0o600)  # it holds live keys
        return path


def drive(url: str, load: Load, *, connections: int, seconds: float, script: Path | None = None) -> dict:
    """req/s, p50 and p99 (ms) of `seconds` of calls over `connections` keep-alive connections:
    wrk running `script` (load.wrk_script), or without one the Python loop. Any answer but a 2xx
    stops the bench."""
    if script is not None:
        return _wrk(url, script, connections, seconds)
    return _python_loop(url, load, connections, seconds)


def _wrk(url: str, script: Path, connections: int, seconds: float) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency",
         "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    failed = [m.group(0) for m in re.finditer(r"(Non-2xx or 3xx responses: \d+|Socket errors: .*)", out)]
    if failed:
        raise SystemExit(f"{url}: {'; '.join(failed)}\n{out}")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
            "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))}


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _python_loop(url: str, load: Load, connections: int, seconds: float) -> dict:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def connection_loop(offset: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine, n = [], offset
        try:
            while time.monotonic() < deadline and not failures:
                method, headers, body = load.request(n)
                began = time.perf_counter()
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                mine.append((time.perf_counter() - began) * 1000)
                if not 200 <= response.status < 300:
                    failures.append(f"{method} {url} answered {response.status}")
                n += connections
        except OSError as exc:
            failures.append(f"{url}: {exc!r}")
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    began = time.monotonic()
    threads = [threading.Thread(target=connection_loop, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(failures[0])
    if not latencies:
        raise SystemExit(f"{url}: no call finished in {seconds:g} s")
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {"rps": len(latencies) / (time.monotonic() - began), "p50": quantiles[49], "p99": quantiles[98]}


def load_label(connections: int) -> str:
    if QUICK:
        return f"a Python loop on {connections} connections (BENCH_QUICK: figures show the bench runs, not speed)"
    return f"wrk -t{min(2, connections)} -c{connections}"
