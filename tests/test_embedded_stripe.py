"""`python -m config.embedded` starts localstripe when no Stripe key is set, and stops it after;
it listens on loopback only, keeps its state per instance, and has its webhook after every start."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
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


# --- Loopback only, state per instance, the webhook on every start (issue 15) ----------------

def _stripe(api_base: str, path: str, data: dict | None = None) -> dict:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(api_base + path, data=body, headers={"Authorization": "Bearer sk_test_x"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _payment_succeeded(api_base: str) -> str:
    card = {"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
            "card[exp_year]": "2040", "card[cvc]": "123"}
    method = _stripe(api_base, "/v1/payment_methods", card)["id"]
    intent = _stripe(api_base, "/v1/payment_intents",
                     {"amount": "4900", "currency": "usd", "payment_method": method, "confirm": "true"})
    assert intent["status"] == "succeeded"
    return intent["id"]


def _listening(port: int) -> list[tuple[str, str]]:
    """(table, local address in /proc's hex) of every listening TCP socket on `port`."""
    found = []
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.append((table, address))
    return found


class Receiver:
    """An HTTP server on loopback that records each POST (headers and body) and answers 200."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, secret: str, timeout: float = 15) -> list[dict]:
        """The events received so far, each signature checked with `secret`; waits for a first one."""
        deadline = time.monotonic() + timeout
        while not self.received and time.monotonic() < deadline:
            time.sleep(0.1)
        events = []
        for _path, headers, body in self.received:
            parts = dict(item.split("=", 1) for item in headers["Stripe-Signature"].split(","))
            expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(parts["v1"], expected)
            events.append(json.loads(body))
        return events

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_localstripe_listens_on_loopback_only(tmp_path: Path):
    server = embedded.EmbeddedStripe(tmp_path, persistent=False)
    server.start()
    try:
        # localstripe's own CLI listens on [::] (every interface, IPv4 too).
        assert _listening(server.port) == [("tcp", "0100007F")]  # 127.0.0.1
    finally:
        server.stop()


def test_two_instances_keep_their_own_state_across_restarts(tmp_path: Path):
    first = embedded.EmbeddedStripe(tmp_path / "a", persistent=True)
    second = embedded.EmbeddedStripe(tmp_path / "b", persistent=True)
    try:
        base_first, base_second = first.start()["STRIPE_API_BASE"], second.start()["STRIPE_API_BASE"]
        customer = _stripe(base_first, "/v1/customers", {"email": "first@example.com"})["id"]
        assert _stripe(base_second, "/v1/customers")["data"] == []
        _stripe(base_second, "/v1/customers", {"email": "second@example.com"})  # written last: the old CLI's winner
        first.stop()
        second.stop()

        assert first.start()["STRIPE_API_BASE"] == base_first
        second.start()

        assert [c["id"] for c in _stripe(base_first, "/v1/customers")["data"]] == [customer]
        assert [c["email"] for c in _stripe(base_second, "/v1/customers")["data"]] == ["second@example.com"]
    finally:
        first.stop()
        second.stop()
    assert sorted(path.name for path in (tmp_path / "a" / "stripe").iterdir()) == ["localstripe.log",
                                                                                    "localstripe.pickle"]


def test_after_a_restart_localstripe_still_delivers_events_to_the_webhook(tmp_path: Path, receiver):
    server = embedded.EmbeddedStripe(tmp_path, persistent=True, webhook_url=receiver.url + embedded.WEBHOOK_PATH)
    try:
        before = server.start()
        server.stop()
        after = server.start()  # a fresh process: localstripe kept no webhook of its own

        intent = _payment_succeeded(after["STRIPE_API_BASE"])

        events = receiver.events(after["STRIPE_WEBHOOK_SECRET"])
    finally:
        server.stop()
    # The app keeps what it was given at the first start: same address, same signing secret.
    assert (after["STRIPE_API_BASE"], after["STRIPE_WEBHOOK_SECRET"]) == (
        before["STRIPE_API_BASE"], before["STRIPE_WEBHOOK_SECRET"])
    assert [(e["type"], e["data"]["object"]["id"]) for e in events] == [("payment_intent.succeeded", intent)]
    assert {path for path, _headers, _body in receiver.received} == {embedded.WEBHOOK_PATH}


# The child pays through the localstripe `run` started, and waits for the event to land.
PAY_CHILD = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from tests.test_embedded_stripe import _payment_succeeded
_payment_succeeded(os.environ["STRIPE_API_BASE"])
time.sleep(3)  # localstripe sends its events a second later
"""


def test_make_run_registers_site_urls_webhook_with_the_localstripe_it_starts(
    no_stripe_configured, monkeypatch, tmp_path: Path, receiver
):
    monkeypatch.setenv("SITE_URL", receiver.url + "/")

    status = embedded.run([sys.executable, "-c", PAY_CHILD, str(embedded.Path(embedded.__file__).parent.parent)],
                          root=tmp_path, persistent=True)

    assert status == 0
    assert [path for path, _headers, _body in receiver.received] == [embedded.WEBHOOK_PATH]
