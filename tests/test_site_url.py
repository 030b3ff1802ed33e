"""Every process builds the same absolute links: the web process, the Celery worker and beat."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.servers import ROOT


def _site_url_in_a_process(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("SITE_URL", "PORT")}
    code = "import django; django.setup(); from django.conf import settings; print(settings.SITE_URL)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "s" * 50, **env},
        capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


def test_the_port_a_process_manager_hands_out_does_not_change_links():
    # honcho gives web 8000, worker 8100 and beat 8200: all must link to the same site.
    assert {_site_url_in_a_process(PORT=port) for port in ("8000", "8100", "8200")} == {"http://127.0.0.1:8000"}


def test_make_run_exports_one_site_url_for_every_process():
    result = subprocess.run(
        ["make", "-s", "--eval", "show-site-url:\n\t@echo $$SITE_URL", "show-site-url", "PORT=8300"],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "SITE_URL"},
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.strip() == "http://127.0.0.1:8300"
