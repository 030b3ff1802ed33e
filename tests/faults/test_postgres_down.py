"""Postgres stopped under a running site (its own Postgres, not the suite's): the API answers
503 JSON, pages answer a plain 503 page, never a 500, and both recover by themselves once
Postgres is back."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.servers import Gunicorn, PostgresServer, manage

pytestmark = [pytest.mark.slow]

SEED = """
from accounts.services import api_key_issue
from tests.factories import CustomerFactory, seeded_plan
customer = CustomerFactory(plan=seeded_plan("starter"))
print("keys:", api_key_issue(customer=customer, name="used").raw, api_key_issue(customer=customer, name="fresh").raw)
"""


def fetch(url: str, raw: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET."""
    request = urllib.request.Request(url, headers={"X-API-Key": raw} if raw else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def test_with_postgres_stopped_the_api_answers_503_json_pages_a_503_page_and_both_recover():
    with PostgresServer() as postgres:
        output = manage("shell", "-c", SEED, env={"DATABASE_URL": postgres.url})
        used_raw, fresh_raw = next(line for line in output.splitlines() if line.startswith("keys:")).split()[1:]
        with Gunicorn(workers=2, threads=2, env={"DATABASE_URL": postgres.url}) as server:
            api = f"{server.url}/v1/geocode?q=Paris"
            assert fetch(api, used_raw)[0] == 200
            assert fetch(f"{server.url}/")[0] == 200

            postgres.stop()
            status, content_type, body = fetch(api, fresh_raw)  # its config must come from Postgres
            assert (status, content_type) == (503, "application/json")
            assert json.loads(body) == {"error": "Service temporarily unavailable; try again shortly",
                                        "code": "service_unavailable"}
            status, content_type, body = fetch(f"{server.url}/")
            assert status == 503 and content_type.startswith("text/html")
            assert "Back in a moment" in body and "Traceback" not in body
            # A key whose config a worker still holds keeps being served from Redis meanwhile.
            cached = fetch(api, used_raw)[0]

            postgres.start()
            deadline = time.monotonic() + 30
            while (fetch(api, fresh_raw)[0], fetch(f"{server.url}/")[0]) != (200, 200):
                assert time.monotonic() < deadline, "the site did not recover on its own"
                time.sleep(0.2)
            recovered_in = 30 - (deadline - time.monotonic())
    print(f"\npostgres down figures: cached key during outage -> {cached}; recovered {recovered_in:.1f}s after start")
    assert cached in (200, 503)
