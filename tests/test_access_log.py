"""The real gunicorn, with the Procfile's config, never writes a raw API key to its access log."""
from __future__ import annotations

import sys
import urllib.error
import urllib.request

import pytest

from accounts.keyformat import key_generate
from tests.servers import Gunicorn

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _get(url: str, **headers: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_keys_in_query_strings_and_referers_never_reach_the_access_log(tmp_path):
    live, test = key_generate(live=True), key_generate(live=False)
    log = tmp_path / "access.log"

    with Gunicorn(workers=1, threads=2, args=("--access-logfile", str(log))) as server:
        statuses = [
            _get(f"{server.url}/v1/geocode?q=Paris&api_key={live}"),
            _get(f"{server.url}/v1/usage?key={test}"),
            _get(f"{server.url}/?api_key={live}&x=1"),
            _get(f"{server.url}/v1/geocode?q=Rome", Referer=f"https://example.com/?k={test}"),
            _get(f"{server.url}/?api_key={live.replace('_', '%5F')}"),
        ]

    text = log.read_text()
    assert statuses[:2] == [401, 401] and statuses[2] == 200
    assert len(text.splitlines()) == 5
    for raw in (live, test, live[8:], test[8:]):
        assert raw not in text
    assert '"GET /v1/geocode?[omitted] HTTP/1.1" 401' in text
    assert '"GET /?api_key=sk_[redacted]&x=1 HTTP/1.1" 200' in text
    assert '"https://example.com/?k=sk_[redacted]"' in text


def test_a_custom_format_printing_the_credential_headers_prints_them_redacted(tmp_path):
    live = key_generate(live=True)
    log = tmp_path / "access.log"
    log_format = "%({x-api-key}i)s|%({authorization}i)s|%({http_x_api_key}e)s|%({user-agent}i)s|%(s)s"

    with Gunicorn(workers=1, threads=2, args=("--access-logfile", str(log), "--access-logformat", log_format)) as server:
        statuses = [_get(f"{server.url}/v1/usage", **{"X-API-Key": live, "User-Agent": f"probe {live}"}),
                    _get(f"{server.url}/v1/usage", Authorization="Bearer not-a-key-at-all")]

    lines = log.read_text().splitlines()
    assert statuses == [401, 401]
    python_agent = "Python-urllib/{}.{}".format(*sys.version_info[:2])
    assert lines == ["[redacted]|-|[redacted]|probe sk_[redacted]|401", f"-|[redacted]|-|{python_agent}|401"], lines
