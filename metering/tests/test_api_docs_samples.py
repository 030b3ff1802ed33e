"""The code samples in the API docs run as printed: curl, Python (requests) and JavaScript (fetch,
Node 20) against a live server whose SITE_URL the samples carry."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

from accounts.services import api_key_issue
from metering.schema import KEY_VARIABLE
from tests.factories import CustomerFactory, seeded_plan
from tests.servers import Gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RUNNERS = {
    "bash": lambda source, path: [("bash", path.with_suffix(".sh"))],
    "python": lambda source, path: [(sys.executable, path.with_suffix(".py"))],
    "javascript": lambda source, path: [("node", path.with_suffix(".mjs"))],
}


def samples(description: str) -> dict[str, str]:
    return {lang: description.split(f"```{lang}\n", 1)[1].split("```", 1)[0] for lang in RUNNERS}


def run(lang: str, source: str, workdir: Path, env: dict) -> str:
    ((program, path),) = RUNNERS[lang](source, workdir / f"sample_{lang}")
    path.write_text(source)
    result = subprocess.run([program, str(path)], capture_output=True, text=True, timeout=60, cwd=workdir, env=env)
    assert result.returncode == 0, (lang, source, result.stdout, result.stderr)
    return result.stdout


def test_every_code_sample_answers_200_as_printed(tmp_path: Path):
    Image.new("RGB", (64, 48), (30, 90, 200)).save(tmp_path / "photo.jpg", "JPEG")
    customer = CustomerFactory(plan=seeded_plan("enterprise"))
    env = {**os.environ, KEY_VARIABLE: api_key_issue(customer=customer, name="docs").raw}
    server = Gunicorn(workers=1, threads=4)
    server.extra_env = {"SITE_URL": server.url}
    with server:
        schema = requests.get(f"{server.url}/v1/schema/?format=json", timeout=30).json()
        for path, operations in schema["paths"].items():
            for op in operations.values():
                if "Verify" in op.get("tags", ()):
                    continue  # called with a product's service token; test_verify.py covers it
                for lang, source in samples(op["description"]).items():
                    assert server.url + path in source
                    output = run(lang, source, tmp_path, env)  # Python and JavaScript exit 1 on an error
                    if lang == "bash" and path == "/v1/usage/export":  # CSV (README "Usage export")
                        assert output.startswith("day,product,key_id,key_name,key,key_status,calls"), output
                    elif lang == "bash":
                        assert "code" not in json.loads(output), (path, output)
