"""`python -m config.embedded` starts localstripe when no Stripe key is set, and stops it after."""
from __future__ import annotations

import json
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from config import embedded

pytestmark = pytest.mark.slow

# The child reports what it was given and proves localstripe answers with the SDK's own key.
CHILD = """
import json, os, sys, urllib.request
names = ["STRIPE_API_BASE", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_JS_URL"]
request = urllib.request.Request(os.environ["STRIPE_API_BASE"] + "/v1/customers",
                                 headers={"Authorization": "Bearer " + os.environ["STRIPE_SECRET_KEY"]})
customers = json.load(urllib.request.urlopen(request, timeout=5))["data"]
js = urllib.request.urlopen(os.environ["STRIPE_JS_URL"], timeout=5).read()
json.dump({**{n: os.environ[n] for n in names}, "customers": len(customers), "js": b"Stripe" in js},
          open(sys.argv[1], "w"))
"""


@pytest.fixture
def no_stripe_configured(monkeypatch):
    # run() forwards signals to its child; give pytest its own handlers back afterwards.
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    # Postgres and Redis "configured", so only the embedded Stripe starts.
    monkeypatch.setenv("DATABASE_URL", "postgres://unused@127.0.0.1:1/unused")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    for name in ("STRIPE_SECRET_KEY", "STRIPE_API_BASE", "STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def test_without_a_stripe_key_localstripe_runs_for_the_command_and_stops_after(no_stripe_configured, tmp_path: Path):
    report = tmp_path / "env.json"

    status = embedded.run([sys.executable, "-c", CHILD, str(report)], root=tmp_path, persistent=False)

    seen = json.loads(report.read_text())
    assert status == 0
    assert seen["STRIPE_API_BASE"].startswith("http://127.0.0.1:")
    assert seen["STRIPE_SECRET_KEY"].startswith("sk_test_") and seen["STRIPE_PUBLISHABLE_KEY"].startswith("pk_test_")
    assert seen["STRIPE_WEBHOOK_SECRET"].startswith("whsec_") and len(seen["STRIPE_WEBHOOK_SECRET"]) > 30
    assert seen["STRIPE_JS_URL"] == seen["STRIPE_API_BASE"] + "/js.stripe.com/v3/"
    assert (seen["customers"], seen["js"]) == (0, True)  # --from-scratch: nothing from earlier runs
    port = int(seen["STRIPE_API_BASE"].rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_with_a_stripe_key_nothing_is_started(no_stripe_configured, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_from_the_environment")
    report = tmp_path / "env.txt"
    child = "import os, sys; open(sys.argv[1], 'w').write(os.environ.get('STRIPE_API_BASE', '-'))"

    assert embedded.run([sys.executable, "-c", child, str(report)], root=tmp_path, persistent=False) == 0

    assert report.read_text() == "-"
    assert not (tmp_path / "stripe").exists()


def test_the_webhook_registration_reaches_localstripe(tmp_path: Path):
    server = embedded.EmbeddedStripe(tmp_path, persistent=False)
    values = server.start()
    try:
        embedded.localstripe_webhook_register(api_base=values["STRIPE_API_BASE"], url="http://127.0.0.1:9/hook/",
                                              secret=values["STRIPE_WEBHOOK_SECRET"])
        bad = urllib.request.Request(values["STRIPE_API_BASE"] + "/_config/webhooks/x", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(bad, timeout=5)
    finally:
        server.stop()
    assert server.process is None
