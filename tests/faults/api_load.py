"""Clients for the multi-process exactness tests: metered calls from several processes and
threads against a real gunicorn, each answer kept with the client's clock before and after it.

The server judges a call on Redis's clock somewhere between the moment the client sent it and
the moment the answer arrived, both read here from the same host's wall clock (time.time(), the
clock Redis's TIME reads too). So a call is certainly inside a time window when both its
bracket ends are, and possibly inside it when its bracket overlaps the window.
"""
from __future__ import annotations

import bisect
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: the connection failed (a worker killed under the call)
    code: str  # the error body's "code", "" for a 2xx
    sent: float  # wall clock, seconds
    received: float


def call(url: str, raw: str, timeout: float = 30) -> Answer:
    request = urllib.request.Request(url, headers={"X-API-Key": raw})
    sent = time.time()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return Answer(response.status, "", sent, time.time())
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            code = json.loads(body).get("code", "")
        except ValueError:
            code = ""
        return Answer(error.code, code, sent, time.time())
    except (OSError, http.client.HTTPException):  # also a body cut short (IncompleteRead)
        return Answer(None, "", sent, time.time())


def _urls(url: str | list[str]) -> list[str]:
    """One server's URL, or several servers' (calls are dealt over them in turn)."""
    return [url] if isinstance(url, str) else list(url)


def _burst(args: tuple[list[str], str, int, float]) -> list[Answer]:
    urls, raw, n, start_at = args
    # Every thread waits for the same instant, so the calls really arrive together.
    with ThreadPoolExecutor(max_workers=n) as pool:
        def one(i):
            time.sleep(max(0.0, start_at - time.time()))
            return call(urls[i % len(urls)], raw)
        return list(pool.map(one, range(n)))


def fire_at_once(url: str | list[str], raw: str, total: int, processes: int = 4) -> list[Answer]:
    """`total` calls at the same instant, from `processes` client processes of one thread per call
    (with several URLs, every client process calls every server)."""
    share = [total // processes + (i < total % processes) for i in range(processes)]
    start_at = time.time() + 1.0  # time for the processes and their threads to start
    with get_context("fork").Pool(processes) as pool:
        return [a for answers in pool.map(_burst, [(_urls(url), raw, n, start_at) for n in share]) for a in answers]


def _paced_share(args: tuple[str, str, float, int, int, int, float]) -> list[Answer]:
    url, raw, per_second, total, offset, stride, start = args
    answers: list[Answer] = []
    lock = threading.Lock()
    turn = iter(range(offset, total, stride))

    def loop() -> None:
        while True:
            with lock:
                n = next(turn, None)
            if n is None:
                return
            time.sleep(max(0.0, start + n / per_second - time.time()))
            answer = call(url, raw)
            with lock:
                answers.append(answer)

    workers = [threading.Thread(target=loop) for _ in range(32)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return answers


def paced(url: str, raw: str, *, per_second: float, seconds: float, processes: int = 3) -> list[Answer]:
    """Calls sent on a fixed schedule, `per_second` for `seconds`, from `processes` client
    processes of 32 threads each taking every `processes`-th turn (open loop: a slow answer does
    not hold the schedule back while a thread is free)."""
    total = int(per_second * seconds)
    start = time.time() + 1.0
    shares = [(url, raw, per_second, total, offset, processes, start) for offset in range(processes)]
    with get_context("fork").Pool(processes) as pool:
        return [a for answers in pool.map(_paced_share, shares) for a in answers]


def hammer(url: str | list[str], raw: str, *, total: int, threads: int, on_answer=None) -> list[Answer]:
    """`total` calls as fast as `threads` client threads can send them (closed loop; with several
    URLs, dealt over them in turn)."""
    urls = _urls(url)
    answers: list[Answer] = []
    lock = threading.Lock()
    turn = iter(range(total))

    def loop() -> None:
        while True:
            with lock:
                n = next(turn, None)
            if n is None:
                return
            answer = call(urls[n % len(urls)], raw)
            with lock:
                answers.append(answer)
            if on_answer is not None:
                on_answer(answer)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return answers


# Redis keeps the window in whole milliseconds: allow one either side of a window's edges.
EDGE = 0.002


def most_certainly_in_any_window(answers: list[Answer], seconds: float) -> int:
    """The most accepted calls certainly inside one window of `seconds` (both bracket ends in it),
    over every window. A window holding the most starts at some call's send time."""
    calls = sorted((a.sent, a.received) for a in answers)
    most = 0
    for i, (start, _) in enumerate(calls):
        end = start + seconds - EDGE
        last = bisect.bisect_left(calls, (end,), lo=i)
        most = max(most, sum(1 for _, received in calls[i:last] if received < end))
    return most


def fewest_possibly_in_any_window(answers: list[Answer], seconds: float, *, first: float, last: float,
                                  step: float = 0.005) -> tuple[int, float]:
    """The fewest accepted calls possibly inside one window of `seconds` (bracket overlapping it),
    over the windows starting every `step` from `first` to `last`, and that window's start."""
    sent = sorted(a.sent for a in answers)
    received = sorted(a.received for a in answers)
    fewest, at, start = len(answers), first, first
    while start <= last:
        end = start + seconds + EDGE
        # overlapping = answered at or after the start, minus those sent at or after the end
        overlapping = (len(received) - bisect.bisect_left(received, start - EDGE)) - (
            len(sent) - bisect.bisect_left(sent, end))
        if overlapping < fewest:
            fewest, at = overlapping, start
        start += step
    return fewest, at


def wait_until_serving(server, *, timeout: float = 90) -> None:
    """The port opens before the workers have booted Django: wait until a round of calls on
    every thread of every worker is answered promptly, so no measured call times a boot."""
    url = f"{server.url}/v1/usage"  # no key: a 401 from any booted worker
    parallel = server.workers * server.threads * 2
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            answered = list(pool.map(lambda _: call(url, "", timeout=5).status, range(parallel)))
        if all(status == 401 for status in answered) and time.monotonic() - began < 1.5:
            return
        time.sleep(0.2)


def worker_pids(master_pid: int) -> list[int]:
    """The gunicorn master's children (its workers), from /proc."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(master_pid):
            pids.append(int(status.parent.name))
    return pids
