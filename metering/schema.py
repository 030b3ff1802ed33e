"""The public API documentation: key authentication for drf-spectacular (loaded from
apps.ready), the error codes, and the copyable code samples added to every operation.

Everything here is read by customers at /v1/docs/: say what a caller sees and does, never how
the service is built.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.conf import settings
from django.db import DatabaseError
from drf_spectacular.extensions import OpenApiAuthenticationExtension

from plans.selectors import products_all_cached

KEY_VARIABLE = "TOLLBOOTH_API_KEY"


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "metering.authentication.ApiKeyAuthentication"
    name = ["BearerKey", "ApiKeyHeader"]

    def get_security_definition(self, auto_schema):
        description = "Your key, `sk_live_…` (64 hex characters after the prefix)."
        return [
            {"type": "http", "scheme": "bearer", "bearerFormat": "sk_live_<64 hex>", "description": description},
            {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": description},
        ]


class ServiceTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "metering.service_tokens.ServiceTokenAuthentication"
    name = "ServiceToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "tbs_<48 hex>", "description": (
            "The service token of one of your products, `tbs_…`, shown once when the product is created or "
            "its token rotated. For your own services only; never give it to API customers."
        )}


@dataclass(frozen=True)
class ErrorCode:
    status: int
    code: str
    meaning: str


# Every `code` a /v1 answer can carry, in the order a call meets them.
ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode(401, "api_key_required", "No key sent. Send `Authorization: Bearer <key>` or `X-API-Key: <key>`."),
    ErrorCode(401, "invalid_api_key", "The key is mistyped, unknown, or past its rotation grace period."),
    ErrorCode(401, "key_revoked", "The key was revoked in the portal: from the next call on. Use another key."),
    ErrorCode(429, "too_many_invalid_keys", "Too many invalid keys from your address this minute; wait "
                                            "`Retry-After` seconds."),
    ErrorCode(403, "account_cancelled", "The account is cancelled; its keys no longer work."),
    ErrorCode(402, "payment_required", "An invoice is unpaid past the grace period. Update your card in the portal."),
    ErrorCode(403, "not_entitled", "Your plan does not include this product. The body carries `upgrade_url` and "
                                   "`upgrade_plan`."),
    ErrorCode(429, "rate_limited", "More calls than your plan allows in 60 seconds (all your keys together). "
                                   "Wait `Retry-After` seconds."),
    ErrorCode(429, "quota_exceeded", "Your plan's monthly calls are used up and the plan has a hard cap. The body "
                                     "carries `upgrade_url` and `upgrade_plan`; `Retry-After` counts to next month."),
    ErrorCode(429, "spend_cap", "The monthly spend cap you set in the portal is reached. Raise it, or wait for "
                                "next month (`Retry-After`)."),
    ErrorCode(429, "test_day_limit", "A test-mode key's day is used up: 1,000 calls a day across your test keys "
                                     "(`Retry-After` counts to midnight UTC). Test keys also get `rate_limited` past "
                                     "10 calls a minute."),
    ErrorCode(400, "parse_error", "The body is not valid JSON, nests too deep, or cannot be read."),
    ErrorCode(400, "invalid_input", "A parameter is missing or out of range; `fields` names each problem."),
    ErrorCode(400, "too_many_parameters", "The query string or form has too many parameters."),
    ErrorCode(413, "payload_too_large", "The request body is larger than the endpoint accepts."),
    ErrorCode(415, "unsupported_media_type", "Wrong `Content-Type`: JSON for text, multipart/form-data for images."),
    ErrorCode(400, "invalid_query", "Geocoding: the query has no letters or digits to search for."),
    ErrorCode(400, "invalid_limit", "Geocoding: `limit` is not a whole number from 1 to 20."),
    ErrorCode(400, "invalid_coordinates", "Reverse geocoding: `lat` or `lon` is not a finite number in range."),
    ErrorCode(400, "invalid_text", "Text analysis: `text` is not a string, or is empty or only whitespace."),
    ErrorCode(400, "text_too_long", "Text analysis: `text` is longer than the limit."),
    ErrorCode(400, "invalid_image", "Image analysis: not an image in a supported format."),
    ErrorCode(413, "image_too_large", "Image analysis: the file is larger than the limit."),
    ErrorCode(413, "image_too_many_pixels", "Image analysis: the image has more pixels than the limit."),
    ErrorCode(413, "image_too_complex", "Image analysis: too many frames, chunks, markers or scans."),
    ErrorCode(400, "bad_path", "Forwarded products: the path holds `.` or `..` segments, `//`, backslashes or "
              "encoded dots or slashes, and is not forwarded."),
    ErrorCode(400, "bad_request", "Forwarded products: the request cannot be forwarded as sent (its "
              "Content-Length, a header value, or a body that ended early)."),
    ErrorCode(413, "body_too_large", "Forwarded products: the request body is larger than the product accepts."),
    ErrorCode(502, "upstream_unavailable", "Forwarded products: the service behind it refused or dropped the "
              "connection, or broke off its answer; not billed."),
    ErrorCode(504, "upstream_timeout", "Forwarded products: the service behind it did not answer in time; "
              "not billed."),
    ErrorCode(404, "not_found", "No such endpoint. Paths have no trailing slash: `/v1/geocode`."),
    ErrorCode(405, "method_not_allowed", "Wrong HTTP method for this endpoint."),
    ErrorCode(500, "internal_error", "Our fault, and not billed. Retry; if it persists, contact support."),
    ErrorCode(503, "metering_unavailable", "Usage cannot be recorded right now; not billed. Retry after "
                                           "`Retry-After`."),
    ErrorCode(503, "service_unavailable", "The service is briefly unavailable; not billed. Retry after `Retry-After`."),
    ErrorCode(401, "invalid_service_token", "Verify API: the service token is missing, unknown or rotated, or its "
                                            "product is inactive."),
    ErrorCode(404, "unknown_call", "Verify API: no such call for this product (unknown, or another product's)."),
    ErrorCode(409, "already_settled", "Verify API: the call was settled already; nothing more is billed."),
    ErrorCode(410, "call_expired", "Verify API: the call was not settled in time; it was released, not billed."),
)


API_DESCRIPTION = """\
Geocoding, text analysis and image analysis over HTTPS, billed per successful call.

Get a key, see your usage and change your plan in the [customer portal]({portal}).

## Authentication
Send your key in `Authorization: Bearer <key>` (or `X-API-Key: <key>`). Keys look like
`sk_live_` followed by 64 hex characters; keep them secret and out of browsers and public
repositories. Examples below read the key from the `{key_variable}` environment variable.

## Limits
Every metered answer, successful or refused with 429, carries:

| Header | Meaning |
|---|---|
| `X-RateLimit-Limit` | Calls allowed in any 60 seconds, all your keys together |
| `X-RateLimit-Remaining` | Calls left in the current 60 seconds |
| `X-RateLimit-Reset` | Seconds until a call frees up |
| `X-Quota-Limit` | Calls included in your plan this month |
| `X-Quota-Remaining` | Included calls left this month |
| `Retry-After` | On 429 and 503: seconds to wait before calling again |

`GET /v1/usage` shows this month's calls and overage; it is free and does not use your rate limit.
`GET /v1/usage/export` downloads your calls by day, product and key as CSV, on the same terms.

## Billing
A call is billed when it is answered with a 2xx status. Refused calls (401, 402, 403, 429), input
we refuse (400, 413, 415) and our own errors (5xx) are not billed and do not use your monthly
calls, but they do count in the 60-second rate limit. Paid plans bill calls beyond the included
ones as overage; plans with a hard cap refuse them with `quota_exceeded` instead.

## Errors
Every error is JSON with a human-readable `error` and a stable machine-readable `code`:

```json
{{"error": "Invalid API key", "code": "invalid_api_key"}}
```

Bad input adds `fields` (each field's problems). `not_entitled` and `quota_exceeded` add
`upgrade_url`, the page where you change plan, and `upgrade_plan`, the cheapest plan that allows
the call (`{{"slug", "name", "price"}}`, price in USD per month; `null` when none does).

| HTTP | `code` | Meaning |
|---|---|---|
{error_rows}

Branch on `code`, not on `error`: messages may be reworded, codes do not change.
"""


def api_description() -> str:
    rows = "\n".join(f"| {e.status} | `{e.code}` | {e.meaning} |" for e in ERROR_CODES)
    return (API_DESCRIPTION.format(portal=portal_url(), key_variable=KEY_VARIABLE, error_rows=rows)
            + upstream_products_description())


def upstream_products_description() -> str:
    """A section for the APIs staff sell through the gateway (Product rows of kind upstream):
    their paths are theirs, so each gets its base URL and one curl line, not an operation."""
    try:
        products = [p for p in products_all_cached().values() if p.active and p.is_upstream]
    except DatabaseError:  # Postgres down, or not migrated yet (`check --deploy` builds the schema):
        products = []    # the docs of the built-in APIs still serve
    if not products:
        return ""
    site = settings.SITE_URL.rstrip("/")
    parts = ["\n## More APIs\nCalled with the same key, limits and billing as the APIs above; the path and "
             "query after the product's base URL are that API's own.\n"]
    for product in products:
        methods = ", ".join(sorted(product.methods))
        parts.append(
            f"\n### {product.name}\n{product.description}\n\nBase URL `{site}/v1/{product.slug}/`, "
            f"methods {methods}.\n\n```bash\ncurl -H \"Authorization: Bearer ${KEY_VARIABLE}\" "
            f"\"{site}/v1/{product.slug}/<path>\"\n```\n"
        )
    return "".join(parts)


def portal_url() -> str:
    return settings.SITE_URL.rstrip("/") + "/portal/"


@dataclass(frozen=True)
class Sample:
    """One realistic call per operation: its query parameters double as their documented examples."""

    method: str
    path: str
    query: dict = field(default_factory=dict)
    json_body: dict | None = None
    file_field: str | None = None
    csv: bool = False  # answers CSV: the samples print the text, and read JSON only on an error


SAMPLES: dict[str, Sample] = {
    "geocode": Sample("GET", "/v1/geocode", query={"q": "Paris", "limit": 2}),
    "geocode_reverse": Sample("GET", "/v1/geocode/reverse", query={"lat": 48.8566, "lon": 2.3522, "limit": 1}),
    "text_analyze": Sample("POST", "/v1/text/analyze", json_body={
        "text": "The new release is fast and the docs are great. Support never answered, though.",
    }),
    "image_analyze": Sample("POST", "/v1/image/analyze", file_field="image"),
    "usage": Sample("GET", "/v1/usage"),
    "usage_export": Sample("GET", "/v1/usage/export", query={"from": "2026-11-01", "to": "2026-11-30",
                                                                     "mode": "live"}, csv=True),
}


def code_samples(sample: Sample) -> str:
    url = settings.SITE_URL.rstrip("/") + sample.path
    return (
        "\n\n**curl**\n\n```bash\n" + _curl(sample, url) + "\n```"
        "\n\n**Python** (requests)\n\n```python\n" + _python(sample, url) + "\n```"
        "\n\n**JavaScript** (fetch)\n\n```javascript\n" + _javascript(sample, url) + "\n```"
    )


def _curl(sample: Sample, url: str) -> str:
    lines = [f'curl "{url}?{urlencode(sample.query)}"' if sample.query else f'curl "{url}"',
             f'  -H "Authorization: Bearer ${KEY_VARIABLE}"']
    if sample.json_body is not None:
        lines += ['  -H "Content-Type: application/json"', f"  -d '{json.dumps(sample.json_body)}'"]
    if sample.file_field:
        lines.append(f'  -F "{sample.file_field}=@photo.jpg"')
    return " \\\n".join(lines)


def _python(sample: Sample, url: str) -> str:
    args = [f'    "{url}",', f'    headers={{"Authorization": f"Bearer {{os.environ[\'{KEY_VARIABLE}\']}}"}},']
    if sample.query:
        args.append(f"    params={json.dumps(sample.query)},")
    if sample.json_body is not None:
        args.append(f"    json={json.dumps(sample.json_body)},")
    if sample.file_field:
        args.append(f'    files={{"{sample.file_field}": open("photo.jpg", "rb")}},')
    call = f"response = requests.{sample.method.lower()}(\n" + "\n".join([*args, "    timeout=30,"]) + "\n)"
    if sample.csv:
        return "import os\n\nimport requests\n\n" + call + "\nif not response.ok:\n    body = response.json()\n" \
            "    raise RuntimeError(f\"{body['code']}: {body['error']}\")\nprint(response.text, end=\"\")"
    return "import os\n\nimport requests\n\n" + call + "\nbody = response.json()\n" \
        "if not response.ok:\n    raise RuntimeError(f\"{body['code']}: {body['error']}\")\nprint(body)"


def _javascript(sample: Sample, url: str) -> str:
    target = f'"{url}"'
    if sample.query:
        params = json.dumps({k: str(v) for k, v in sample.query.items()})
        target = f'"{url}?" + new URLSearchParams({params})'
    authorization = f"Authorization: `Bearer ${{process.env.{KEY_VARIABLE}}}`"
    options = [f'  method: "{sample.method}",', f"  headers: {{ {authorization}"]
    prelude = ""
    if sample.json_body is not None:
        options[1] += ', "Content-Type": "application/json"'
        options.append(f"  body: JSON.stringify({json.dumps(sample.json_body)}),")
    if sample.file_field:
        prelude = ('// Node 20+; in a browser, append a File from an <input type="file"> instead.\n'
                   'import { openAsBlob } from "node:fs";\n\nconst form = new FormData();\n'
                   f'form.append("{sample.file_field}", await openAsBlob("photo.jpg"), "photo.jpg");\n\n')
        options.append("  body: form,")
    options[1] += " },"
    if sample.csv:
        return (f"const response = await fetch({target}, {{\n" + "\n".join(options) + "\n});\n"
                "if (!response.ok) {\n  const body = await response.json();\n"
                "  throw new Error(`${body.code}: ${body.error}`);\n}\nconsole.log(await response.text());")
    return (prelude + f"const response = await fetch({target}, {{\n" + "\n".join(options) + "\n});\n"
            "const body = await response.json();\n"
            "if (!response.ok) throw new Error(`${body.code}: ${body.error}`);\nconsole.log(body);")


def public_docs_hook(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: the API description with the error codes and the
    portal link, and for each operation its code samples and parameter examples."""
    result["info"]["description"] = api_description()
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            sample = SAMPLES.get(operation.get("operationId"))
            if sample is None:
                continue
            operation["description"] = operation.get("description", "") + code_samples(sample)
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter["name"] in sample.query:
                    parameter["example"] = sample.query[parameter["name"]]
    return result
