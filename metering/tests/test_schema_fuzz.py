"""schemathesis against /v1/schema/ on a live server: no 5xx, no response outside the schema."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.services import api_key_issue
from tests.factories import CustomerFactory, seeded_plan
from tests.servers import Gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# CI runs a short pass; `make fuzz` sets FUZZ_EXAMPLES higher for a long one.
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "25")


def test_the_api_never_answers_5xx_or_off_schema(tmp_path: Path):
    customer = CustomerFactory(plan=seeded_plan("enterprise"))
    raw = api_key_issue(customer=customer, name="fuzz").raw
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    with Gunicorn(workers=2, threads=4) as server:
        result = subprocess.run(
            [st, "run", f"{server.url}/v1/schema/", "--url", server.url,
             "-H", f"Authorization: Bearer {raw}",
             "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                         "response_headers_conformance,response_schema_conformance",
             "--max-examples", EXAMPLES, "--seed", "1", "--request-timeout", "30",
             "--generation-database", "none"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@pytest.mark.django_db
def test_the_schema_is_valid_openapi_with_no_generator_warnings(tmp_path: Path):
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for needle in ("X-RateLimit-Remaining", "X-Quota-Remaining", "Retry-After", "BearerKey", "ApiKeyHeader",
                   "'402'", "'429'", "/v1/usage"):
        assert needle in text, needle
