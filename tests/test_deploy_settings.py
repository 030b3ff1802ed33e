"""Deployment settings come from the environment: TLS, cookies, HSTS, CSP, and the secret key."""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys

import pytest
from django.urls import reverse

from tests.servers import ROOT

# What the test process itself set for plain-HTTP tests must not leak into "production".
LOCAL_ONLY = {"SECRET_KEY", "SECURE_HTTPS", "DEBUG", "DJANGO_SETTINGS_MODULE", "PORT", "SITE_URL"}
PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "api.example.com",
    "SITE_URL": "https://api.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://api.example.com",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
}


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in LOCAL_ONLY}
    return subprocess.run(
        args, cwd=ROOT, env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True, text=True, timeout=120,
    )


def _settings_in_a_process(**env: str) -> dict:
    names = ["SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
             "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER"]
    code = ("import django, json; django.setup(); from django.conf import settings; "
            f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))")
    result = _run([sys.executable, "-c", code], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_check_deploy_with_a_production_environment_prints_no_warning():
    result = _run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr and "?: (" not in result.stderr


@pytest.mark.slow
def test_tls_settings_are_on_by_default_when_debug_is_off():
    assert _settings_in_a_process(**PRODUCTION) == {
        "SECURE_SSL_REDIRECT": True, "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True, "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


@pytest.mark.slow
def test_plain_http_local_runs_turn_tls_off_with_one_setting_and_each_can_be_set():
    local = _settings_in_a_process(**{**PRODUCTION, "SECURE_HTTPS": "false", "SECURE_PROXY_SSL_HEADER": ""})
    tuned = _settings_in_a_process(**{**PRODUCTION, "SECURE_HSTS_SECONDS": "600", "SECURE_HSTS_PRELOAD": "false"})

    assert local == {
        "SECURE_SSL_REDIRECT": False, "SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0, "SECURE_HSTS_INCLUDE_SUBDOMAINS": False, "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    assert tuned["SECURE_HSTS_SECONDS"] == 600 and tuned["SECURE_HSTS_PRELOAD"] is False


@pytest.mark.slow
def test_the_development_secret_key_is_refused_unless_debug_is_on():
    code = "import django; django.setup()"
    without_key = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}

    refused = _run([sys.executable, "-c", code], **without_key)
    debugging = _run([sys.executable, "-c", code], **without_key, DEBUG="true")

    assert refused.returncode != 0
    assert "ImproperlyConfigured: Set SECRET_KEY" in refused.stderr
    assert debugging.returncode == 0, debugging.stderr


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_that_allows_stripe_js(client, settings):
    policy = client.get(reverse("pricing"))["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))

    assert directives["default-src"] == "'self'"
    assert directives["script-src"].startswith("'self'") and "'unsafe-inline'" not in directives["script-src"]
    assert "https://js.stripe.com" in directives["script-src"]
    assert "https://js.stripe.com" in directives["frame-src"]
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"


@pytest.mark.slow
def test_the_stripe_js_origin_from_the_settings_is_allowed():
    result = _run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
         "print(settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['script-src'])"],
        **PRODUCTION, STRIPE_JS_URL="http://127.0.0.1:8420/js.stripe.com/v3/",
    )

    assert "'http://127.0.0.1:8420'" in result.stdout and "'https://js.stripe.com'" in result.stdout


@pytest.mark.django_db
def test_the_api_docs_page_runs_no_inline_script(client):
    html = client.get(reverse("docs")).content.decode()

    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all(" src=" in tag for tag in scripts)
    assert '<script src="/v1/docs/?script=">' in scripts
