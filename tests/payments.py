"""The embedded Stripe for tests: localstripe, run through its CLI, and a live webhook target.

`make test` starts localstripe through config/embedded.py and exports STRIPE_API_BASE; a bare
`pytest` starts one of its own here (always --from-scratch). Tests never talk to real Stripe,
even with real keys in the environment: the settings point at localstripe for the session.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

import pytest
from django.conf import settings

from config.embedded import EmbeddedStripe, WEBHOOK_PATH, localstripe_webhook_register

STRIPE_SETTINGS = (
    "STRIPE_API_BASE", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_JS_URL",
)
TEST_CARD = "4242424242424242"
# Attaches fine, but every charge on it is declined (Stripe's and localstripe's test card).
DECLINED_CHARGE_CARD = "4000000000000341"


@dataclass(frozen=True)
class StripeServer:
    api_base: str
    webhook_secret: str

    def webhook_target(self, site_url: str) -> None:
        localstripe_webhook_register(
            api_base=self.api_base, url=site_url.rstrip("/") + WEBHOOK_PATH, secret=self.webhook_secret,
        )


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory):
    started = None
    if os.environ.get("STRIPE_API_BASE"):
        values = {name: os.environ.get(name, "") for name in STRIPE_SETTINGS}
    else:
        started = EmbeddedStripe(tmp_path_factory.mktemp("stripe"), persistent=False)
        values = started.start()
    saved = {name: getattr(settings, name, None) for name in (*STRIPE_SETTINGS, "CONTENT_SECURITY_POLICY")}
    for name, value in values.items():
        setattr(settings, name, value)
    settings.CONTENT_SECURITY_POLICY = _csp_allowing(saved["CONTENT_SECURITY_POLICY"], values["STRIPE_API_BASE"])
    try:
        yield StripeServer(api_base=values["STRIPE_API_BASE"], webhook_secret=values["STRIPE_WEBHOOK_SECRET"])
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)
        if started is not None:
            started.stop()


def _csp_allowing(policy: dict | None, origin: str) -> dict | None:
    """The policy settings build from STRIPE_JS_URL at start-up, for a Stripe started later."""
    if not policy:
        return policy
    directives = {name: list(values) for name, values in policy.get("DIRECTIVES", {}).items()}
    for name in ("script-src", "connect-src", "frame-src"):
        if origin not in directives.setdefault(name, []):
            directives[name].append(origin)
    return {**policy, "DIRECTIVES": directives}


@pytest.fixture
def stripe_webhooks(stripe_server, live_server):
    """localstripe delivers its signed events to this test's live server; returns its URL."""
    stripe_server.webhook_target(live_server.url)
    yield live_server.url
    # Events still on their way (localstripe waits a second) must not land in a later test.
    stripe_server.webhook_target("http://127.0.0.1:9")


def wait_until(condition: Callable[[], bool], *, timeout: float = 15.0) -> bool:
    """Wait for another process (localstripe sends webhooks a second after the event)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def card_confirm_as_stripe_js(*, client_secret: str, number: str = TEST_CARD) -> dict:
    """What Stripe.js's confirmCardSetup sends from the browser (publishable key, card data).

    Only localstripe accepts raw card numbers over its API; the browser test drives the real page.
    """
    setup_intent_id = client_secret.split("_secret_")[0]
    body = json.dumps({
        "key": settings.STRIPE_PUBLISHABLE_KEY, "use_stripe_sdk": True, "client_secret": client_secret,
        "payment_method_data": {"type": "card", "card": {
            "number": number, "exp_month": "12", "exp_year": "2031", "cvc": "123"}},
    }).encode()
    request = urllib.request.Request(
        f"{settings.STRIPE_API_BASE}/v1/setup_intents/{setup_intent_id}/confirm", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # a card refused at setup: Stripe.js shows the error
        return json.loads(exc.read())


def stripe_object(resource: str, object_id: str) -> dict:
    """One object as localstripe holds it (payment_methods, payment_intents), read over HTTP."""
    request = urllib.request.Request(
        f"{settings.STRIPE_API_BASE}/v1/{resource}/{object_id}",
        headers={"Authorization": f"Bearer {settings.STRIPE_SECRET_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def stripe_list(resource: str) -> list[dict]:
    """Everything localstripe holds of one kind (payment_intents, charges), oldest first."""
    request = urllib.request.Request(
        f"{settings.STRIPE_API_BASE}/v1/{resource}?limit=1000",
        headers={"Authorization": f"Bearer {settings.STRIPE_SECRET_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


@pytest.fixture
def celery_outside_task():
    """Eager tasks run from two threads at once (a live server's webhook and the test) race on
    Celery's process-wide "inside a task" flag and can leave it set, which makes every later
    `.get()` raise; tests run outside any task, so start and end each one with it cleared."""
    from celery import _state

    _state._set_task_join_will_block(False)
    yield
    _state._set_task_join_will_block(False)


def card_on_file(customer, number: str = TEST_CARD):
    """The portal's two steps: a SetupIntent for the card Element, then the browser comes back."""
    from billing import cards

    intent = cards.card_setup_start(customer=customer)
    card_confirm_as_stripe_js(client_secret=intent.client_secret, number=number)
    customer.refresh_from_db()
    return cards.card_setup_confirm(customer=customer, setup_intent_id=intent.id)
