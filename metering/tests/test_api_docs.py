"""The public API docs (/v1/schema/, /v1/docs/) are written for customers: every operation
explained with examples and code samples, every error code listed, nothing about our insides."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

METERING = Path(__file__).resolve().parents[1]
INTERNAL_WORDS = ("lua", "redis", "postgres", "hot path", "flush", "sql", "celery", "fail-open")
# Codes the API can answer with: each `default_code = "..."`, `code="..."` and error_body(..., "...") in
# the metering app, so a new code cannot ship undocumented.
CODE_PATTERN = re.compile(r'(?:default_code\s*=\s*|code=)"([a-z_]+)"|error_body\("[^"]*",\s*"([a-z_]+)"')
# Answered by the framework itself, with its own codes.
FRAMEWORK_CODES = {"unsupported_media_type", "method_not_allowed", "invalid_input"}


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker) -> dict:  # the docs list the upstream products: a database
    with django_db_blocker.unblock():
        response = APIClient().get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return json.loads(response.content)


def operations(schema: dict) -> list[tuple[str, dict]]:
    # The customers' operations. The verify API (tag Verify) is called by the seller's own services with a
    # service token, not with a customer's key: metering/tests/test_verify.py checks its docs.
    return [(f"{method.upper()} {path}", op) for path, ops in schema["paths"].items() for method, op in ops.items()
            if "Verify" not in op.get("tags", ())]


def api_error_codes() -> set[str]:
    sources = [p for p in METERING.rglob("*.py") if "tests" not in p.parts]
    found = {code for p in sources for match in CODE_PATTERN.findall(p.read_text()) for code in match if code}
    return found | FRAMEWORK_CODES


def test_the_docs_cover_all_six_operations(schema):
    assert {op["operationId"] for _, op in operations(schema)} == {
        "geocode", "geocode_reverse", "text_analyze", "image_analyze", "usage", "usage_export",
    }


def test_every_operation_has_a_summary_a_description_and_code_samples_in_three_languages(schema):
    for name, op in operations(schema):
        assert op["summary"].strip(), name
        text, _, samples = op["description"].partition("**curl**")
        assert len(text.strip()) > 40, name
        for fence in ("```bash\ncurl ", "```python\nimport os", "```javascript\n"):
            assert fence in samples, (name, fence)
        assert settings.SITE_URL.rstrip("/") + name.split(" ")[1] in samples, name


def test_the_python_samples_are_valid_python(schema):
    for name, op in operations(schema):
        source = op["description"].split("```python\n", 1)[1].split("```", 1)[0]
        compile(source, name, "exec")


def test_every_parameter_and_request_field_is_described_with_an_example(schema):
    for name, op in operations(schema):
        for parameter in op.get("parameters", []):
            assert parameter.get("description", "").strip(), (name, parameter["name"])
            assert "example" in parameter, (name, parameter["name"])
        for content in op.get("requestBody", {}).get("content", {}).values():
            component = schema["components"]["schemas"][content["schema"]["$ref"].rsplit("/", 1)[1]]
            for field, spec in component["properties"].items():
                assert spec.get("description", "").strip(), (name, field)


def test_every_operation_has_response_examples_for_success_and_for_errors(schema):
    for name, op in operations(schema):
        # JSON, or CSV for the usage export (README "Usage export"); errors are JSON everywhere.
        (ok_content,) = op["responses"]["200"]["content"].values()
        ok = ok_content["examples"]
        assert ok and all("value" in example for example in ok.values()), name
        for status in ("401", "402", "403", "429"):
            assert op["responses"][status]["content"]["application/json"]["examples"], (name, status)
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            assert op["requestBody"]["content"]["application/json"]["examples"], name


def test_the_refusals_a_plan_change_lifts_show_their_upgrade_fields(schema):
    examples = schema["paths"]["/v1/image/analyze"]["post"]["responses"]["403"]["content"]["application/json"]
    bodies = [example["value"] for example in examples["examples"].values()]
    assert {"not_entitled", "account_cancelled"} == {body["code"] for body in bodies}
    upgrade = next(body for body in bodies if body["code"] == "not_entitled")
    assert upgrade["upgrade_plan"] == {"slug": "starter", "name": "Starter", "price": "49.00"}
    assert set(schema["components"]["schemas"]["Error"]["properties"]) == {
        "error", "code", "fields", "upgrade_url", "upgrade_plan",
    }


def test_the_api_description_lists_every_error_code_and_links_to_the_portal(schema):
    description = schema["info"]["description"]
    codes = api_error_codes()
    assert {"quota_exceeded", "too_many_parameters", "image_too_complex", "service_unavailable"} <= codes
    for code in codes:
        assert f"| `{code}` |" in description, code
    portal = settings.SITE_URL.rstrip("/") + "/portal/"
    assert f"]({portal})" in description
    assert schema["externalDocs"]["url"] == portal


def test_the_public_schema_says_nothing_about_how_the_service_is_built(schema):
    text = json.dumps(schema).lower()
    for word in INTERNAL_WORDS:
        assert not re.search(rf"\b{re.escape(word)}\b", text), word


def test_the_schema_generates_without_warnings_and_validates(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "operationId: image_analyze" in (tmp_path / "schema.yml").read_text()


def test_the_interactive_docs_page_is_served():
    response = APIClient().get("/v1/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
