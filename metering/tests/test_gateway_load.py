"""The gateway through a real gunicorn (the Procfile's serving model) in front of a real upstream
process: 20 MB streamed both ways without being held, exact limits under parallel calls,
hundreds of slow calls in flight at once, and path escapes sent raw on the wire."""
from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
import time
from pathlib import Path

import pytest
from django.db.models import Sum
from django.utils import timezone

from accounts.services import api_key_issue
from config import gunicorn as serving
from metering.models import UsageRecord
from metering.services import usage_flush
from metering.tests.test_concurrency import fire
from metering.tests.test_gateway import SECRET, SLUG, sell, stats
from tests.factories import CustomerFactory, seeded_plan
from tests.fixtures import SINCE_LAST_YEAR
from tests.servers import Gunicorn, Upstream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MB = 1_000_000
TWENTY_MB = 20 * MB
# A worker that held a 20 MB body would grow by at least that much.
MEMORY_SLACK_KB = 8 * 1024
BLOCK = bytes(range(256)) * 256  # what the upstream streams, repeated


@pytest.fixture
def upstream():
    with Upstream(secret=SECRET) as server:
        yield server


def buyer_key(plan) -> tuple:
    customer = CustomerFactory(plan=plan, created_at=SINCE_LAST_YEAR)
    return customer, api_key_issue(customer=customer, name="k").raw


def billed(customer) -> int:
    usage_flush()
    return UsageRecord.objects.filter(customer=customer, product=SLUG).aggregate(s=Sum("calls"))["s"] or 0


def peak_rss_kb(server: Gunicorn) -> int:
    """VmHWM (peak resident memory) of the server's one worker process."""
    master = server.process.pid
    (worker,) = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    status = Path(f"/proc/{worker}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


def expected_sha256(total: int) -> str:
    digest, left = hashlib.sha256(), total
    while left:
        piece = BLOCK[:min(len(BLOCK), left)]
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


def download(server: Gunicorn, raw: str, path: str) -> tuple[int, int, str]:
    """(status, bytes, sha256) of a GET read in 64 KiB pieces."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("GET", path, headers={"X-API-Key": raw})
        response = conn.getresponse()
        digest, size = hashlib.sha256(), 0
        while piece := response.read(65536):
            digest.update(piece)
            size += len(piece)
        return response.status, size, digest.hexdigest()
    finally:
        conn.close()


def upload(server: Gunicorn, raw: str, path: str, total: int, *, chunked: bool) -> tuple[int, dict]:
    def pieces():
        left = total
        while left:
            piece = BLOCK[:min(len(BLOCK), left)]
            left -= len(piece)
            yield piece

    headers = {"X-API-Key": raw, "Content-Type": "application/octet-stream"}
    headers.update({"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(total)})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", path, body=pieces(), headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_20_mb_answer_and_a_20_mb_upload_stream_through_without_being_held(upstream):
    plan = seeded_plan("starter")
    sell(upstream.base, plan, body_limit_bytes=25 * MB, timeout_seconds=30)
    customer, raw = buyer_key(plan)
    with Gunicorn(workers=1, threads=4) as server:
        # Warm-up: imports, caches and buffers a first call allocates.
        assert download(server, raw, f"/v1/{SLUG}/stream/{2 * MB}")[:2] == (200, 2 * MB)
        assert upload(server, raw, f"/v1/{SLUG}/upload", 2 * MB, chunked=True)[0] == 200
        before = peak_rss_kb(server)

        assert download(server, raw, f"/v1/{SLUG}/stream/{TWENTY_MB}") == (200, TWENTY_MB, expected_sha256(TWENTY_MB))
        assert download(server, raw, f"/v1/{SLUG}/stream/{TWENTY_MB}?chunked=1") == (
            200, TWENTY_MB, expected_sha256(TWENTY_MB))
        for chunked in (False, True):
            status, answer = upload(server, raw, f"/v1/{SLUG}/upload", TWENTY_MB, chunked=chunked)
            assert status == 200
            assert answer == {"body_bytes": TWENTY_MB, "body_sha256": expected_sha256(TWENTY_MB), "chunked": chunked}

        grown = peak_rss_kb(server) - before
    print(f"\n20 MB streamed 4 times: the worker's peak RSS grew by {grown} kB")
    assert grown < MEMORY_SLACK_KB
    assert billed(customer) == 6


def test_a_chunked_upload_past_the_limit_is_cut_with_413_and_not_billed(upstream):
    plan = seeded_plan("starter")
    sell(upstream.base, plan, body_limit_bytes=MB)
    customer, raw = buyer_key(plan)
    with Gunicorn(workers=1, threads=4) as server:
        status, answer = upload(server, raw, f"/v1/{SLUG}/upload", 3 * MB, chunked=True)
        assert status == 413
        assert answer == {"error": f"Request body larger than {MB} bytes", "code": "body_too_large"}
        assert upload(server, raw, f"/v1/{SLUG}/upload", MB, chunked=True)[0] == 200
    assert billed(customer) == 1


def test_an_answer_the_upstream_breaks_off_reaches_the_client_cut_and_is_not_billed(upstream):
    plan = seeded_plan("starter")
    sell(upstream.base, plan)
    customer, raw = buyer_key(plan)

    def cut_download(path: str) -> tuple:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", path, headers={"X-API-Key": raw})
        response = conn.getresponse()
        size, incomplete = 0, False
        try:
            while piece := response.read(65536):
                size += len(piece)
        except http.client.IncompleteRead as error:
            size, incomplete = size + len(error.partial), True
        conn.close()
        return response.status, response.getheader("Content-Length"), size < 5 * MB, incomplete

    with Gunicorn(workers=1, threads=4) as server:
        # With its length announced, the client sees fewer bytes than promised; chunked, the
        # closing chunk never comes. Either way the client can tell the answer is not whole.
        assert cut_download(f"/v1/{SLUG}/stream/{5 * MB}?cut={MB}") == (200, str(5 * MB), True, False)
        assert cut_download(f"/v1/{SLUG}/stream/{5 * MB}?cut={MB}&chunked=1") == (200, None, True, True)
        # Broken off before its first byte: a clean 502 answer instead.
        assert cut_download(f"/v1/{SLUG}/stream/{5 * MB}?cut=0")[0] == 502
        assert download(server, raw, f"/v1/{SLUG}/stream/{MB}")[:2] == (200, MB)
    assert billed(customer) == 1


def test_a_2xx_the_client_stops_reading_is_billed_once_the_server_is_done_with_it(upstream):
    plan = seeded_plan("starter")
    sell(upstream.base, plan)
    customer, raw = buyer_key(plan)
    with Gunicorn(workers=1, threads=4) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", f"/v1/{SLUG}/stream/{TWENTY_MB}", headers={"X-API-Key": raw})
        response = conn.getresponse()
        assert response.status == 200 and len(response.read(MB)) == MB
        conn.close()  # the client goes away with 19 MB unread
        assert download(server, raw, f"/v1/{SLUG}/stream/{MB}")[:2] == (200, MB)
    assert billed(customer) == 2


def test_130_parallel_calls_on_a_100_per_minute_plan_forward_exactly_100(upstream):
    plan = seeded_plan("starter")
    assert plan.rate_per_minute == 100
    sell(upstream.base, plan)
    customer, raw = buyer_key(plan)
    stats(upstream, clear=True)
    with Gunicorn(workers=2, threads=16) as server:
        statuses = fire(f"{server.url}/v1/{SLUG}/echo", raw, 130)
    assert statuses.count(200) == 100 and statuses.count(429) == 30
    assert stats(upstream) == {"echo": 100}
    assert billed(customer) == 100


def test_the_hard_cap_holds_exactly_through_the_gateway(upstream):
    plan = seeded_plan("free")
    plan.rate_per_minute = 1000  # the monthly cap, not the rate, is the limit that races
    plan.save()
    sell(upstream.base, plan)
    customer, raw = buyer_key(plan)
    UsageRecord.objects.create(customer=customer, product=SLUG, day=timezone.now().date(),
                               calls=plan.included_calls - 15)
    stats(upstream, clear=True)
    with Gunicorn(workers=2, threads=16) as server:
        statuses = fire(f"{server.url}/v1/{SLUG}/echo", raw, 75)
    assert statuses.count(200) == 15 and statuses.count(429) == 60
    assert stats(upstream) == {"echo": 15}
    assert billed(customer) == plan.included_calls


def test_300_calls_to_a_1_second_upstream_are_in_flight_at_once(upstream):
    plan = seeded_plan("pro")  # 500 calls a minute: the rate limit stays out of the way
    sell(upstream.base, plan, timeout_seconds=10)
    customer, raw = buyer_key(plan)
    statuses: list = [None] * 300

    def call(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request("GET", f"/v1/{SLUG}/sleep/1000", headers={"X-API-Key": raw})
            response = conn.getresponse()
            answer = response.read()
            statuses[index] = response.status if response.status == 200 else (response.status, answer[:300])
        finally:
            conn.close()

    # The Procfile's serving model, as config/gunicorn.py sets it.
    with Gunicorn(workers=serving.workers, threads=serving.threads) as server:
        # Both workers booted, but the key left cold: each worker's first calls all look it up
        # at once, on a pool of a few database connections.
        booting = [threading.Thread(target=download, args=(server, "", f"/v1/{SLUG}/echo")) for _ in range(40)]
        for thread in booting:
            thread.start()
        for thread in booting:
            thread.join()
        stats(upstream, clear=True)
        threads = [threading.Thread(target=call, args=(i,)) for i in range(300)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    seen = stats(upstream)
    print(f"\n300 calls to a 1 s upstream through {serving.workers} x {serving.threads} threads: {elapsed:.2f}s, "
          f"{seen.get('sleep_peak')} at once")
    assert statuses == [200] * 300
    assert seen["sleep"] == 300
    # One worker's threads could hold 160 at most: more at once means both workers' threads took
    # calls side by side instead of queueing (a count, not a stopwatch: this machine is shared).
    assert seen["sleep_peak"] > serving.threads


RAW_ESCAPES = [
    "/../secret", "/echo/../../secret", "/%2e%2e/secret", "/%2E%2E%2Fsecret", "/..%2fsecret", "/..%5Csecret",
    "/%252e%252e/secret", "//127.0.0.1/secret", "/echo//secret", "/..;/secret", "/echo\\..\\secret",
    "/%5c%5cevil.example/x", "/http://evil.example/secret", "/./echo", "/echo/%2e%2e",
]


def test_path_escapes_sent_raw_on_the_wire_never_reach_the_upstream(upstream):
    plan = seeded_plan("starter")
    sell(upstream.base, plan)
    customer, raw = buyer_key(plan)
    stats(upstream, clear=True)
    with Gunicorn(workers=1, threads=4) as server:
        for escape in RAW_ESCAPES:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", f"/v1/{SLUG}{escape}", headers={"X-API-Key": raw})
            response = conn.getresponse()
            assert response.status == 400, escape
            assert json.loads(response.read())["code"] == "bad_path", escape
            conn.close()
        status, size, _ = download(server, raw, f"/v1/{SLUG}/echo/a%2Fb/@evil.example")
        assert status == 200
    assert stats(upstream) == {"echo": 1}
    assert billed(customer) == 1
