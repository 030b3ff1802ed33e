"""Webhook deliveries against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import re
import socket
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from notifications.models import WebhookEndpoint, WebhookEvent
from notifications.outbound import RESPONSE_READ_BYTES, address_is_public
from notifications.services import (
    RETRY_DELAYS, RETRY_WINDOW, webhook_endpoint_set, webhook_event_resend, webhook_secret_roll, webhook_test_send,
)
from notifications.signing import signature_verify
from notifications.tasks import webhook_retries_run

from .receiver import Answer, Receiver

pytestmark = pytest.mark.django_db
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_recipe() -> str:
    """The receiver's verification code exactly as the README prints it."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    [code] = [block for block in blocks if "def verify(" in block]
    return code


def readme_verify():
    namespace: dict = {}
    exec(readme_recipe(), namespace)
    return namespace["verify"]


@pytest.fixture
def endpoint(customer, receiver) -> WebhookEndpoint:
    return webhook_endpoint_set(customer=customer, url=receiver.url).endpoint


def send_test_event(customer, capture) -> WebhookEvent:
    with capture(execute=True):
        event = webhook_test_send(customer=customer)
    event.refresh_from_db()
    return event


def retry_due(event: WebhookEvent) -> WebhookEvent:
    """Move the clock to the event's next attempt and let the beat task run."""
    with time_machine.travel(event.next_attempt_at + timedelta(seconds=1), tick=False):
        webhook_retries_run()
    event.refresh_from_db()
    return event


def test_a_delivery_verifies_with_the_readme_recipe(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    event = send_test_event(customer, django_capture_on_commit_callbacks)

    [request] = receiver.received
    assert event.status == WebhookEvent.Status.DELIVERED
    assert request.path == "/hooks/tollbooth"
    assert request.headers["Content-Type"] == "application/json"
    assert readme_verify()(request.body, request.headers["Tollbooth-Signature"], endpoint.secret) is True
    assert signature_verify(header=request.headers["Tollbooth-Signature"], body=request.body, secret=endpoint.secret)
    assert readme_verify()(request.body + b" ", request.headers["Tollbooth-Signature"], endpoint.secret) is False
    assert readme_verify()(request.body, request.headers["Tollbooth-Signature"], "whsec_wrong") is False


def test_the_event_body_has_id_type_created_and_data(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    import json

    event = send_test_event(customer, django_capture_on_commit_callbacks)

    body = json.loads(receiver.received[0].body)
    assert body == {"id": event.event_id, "type": "webhook.test", "created": int(event.created_at.timestamp()),
                    "data": {"message": "A test event from your Tollbooth settings page.", "customer": customer.company}}


def test_a_500_then_a_200_is_delivered_on_the_retry(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    receiver.answer(Answer(status=500, body=b"boom"), Answer(status=200))

    event = send_test_event(customer, django_capture_on_commit_callbacks)
    assert event.status == WebhookEvent.Status.PENDING
    first = event.deliveries.get()
    assert (first.response_status, first.response_body, first.succeeded) == (500, "boom", False)
    assert event.next_attempt_at - first.started_at == timedelta(seconds=RETRY_DELAYS[0])

    event = retry_due(event)

    assert event.status == WebhookEvent.Status.DELIVERED
    assert [d.response_status for d in event.deliveries.order_by("started_at")] == [500, 200]
    assert [r.body for r in receiver.received] == [receiver.received[0].body] * 2  # same event, same id


def test_a_retry_that_is_not_due_yet_does_nothing(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    receiver.answer(Answer(status=503))
    send_test_event(customer, django_capture_on_commit_callbacks)

    assert webhook_retries_run() == 0
    assert len(receiver.received) == 1


def test_retries_back_off_and_stop_within_three_days(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    receiver.answer(*[Answer(status=500)] * 20)
    event = send_test_event(customer, django_capture_on_commit_callbacks)
    while event.status == WebhookEvent.Status.PENDING:
        event = retry_due(event)

    starts = list(event.deliveries.order_by("started_at").values_list("started_at", flat=True))
    assert event.status == WebhookEvent.Status.FAILED
    assert len(starts) == 1 + len(RETRY_DELAYS) == 11
    assert [int((b - a).total_seconds()) for a, b in zip(starts, starts[1:])] == [d + 1 for d in RETRY_DELAYS]
    assert starts[-1] - starts[0] <= RETRY_WINDOW


def test_a_redirect_is_logged_and_not_followed(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    receiver.answer(Answer(status=302, body=b"", headers={"Location": f"http://127.0.0.1:{receiver.port}/elsewhere"}))

    event = send_test_event(customer, django_capture_on_commit_callbacks)

    assert [r.path for r in receiver.received] == ["/hooks/tollbooth"]
    delivery = event.deliveries.get()
    assert (delivery.response_status, delivery.succeeded) == (302, False)
    assert event.status == WebhookEvent.Status.PENDING


def test_a_private_address_is_refused_at_send_time_when_not_allowed(customer, endpoint, receiver, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    event = send_test_event(customer, django_capture_on_commit_callbacks)

    assert receiver.received == []
    delivery = event.deliveries.get()
    assert delivery.response_status is None
    assert delivery.error == "Refused: 127.0.0.1 resolves to a private or reserved address"


def test_a_name_is_checked_on_the_address_it_resolves_to_and_connected_there(customer, receiver, settings, monkeypatch, django_capture_on_commit_callbacks):
    # DNS is the edge of the world: the name answers with a loopback address, as in a rebinding attack.
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real("127.0.0.1" if host == "hooks.example.com" else host, *a, **k))
    webhook_endpoint_set(customer=customer, url=f"http://hooks.example.com:{receiver.port}/in")

    settings.WEBHOOKS_ALLOW_PRIVATE = False
    refused = send_test_event(customer, django_capture_on_commit_callbacks)
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    allowed = send_test_event(customer, django_capture_on_commit_callbacks)

    assert refused.deliveries.get().error == "Refused: hooks.example.com resolves to a private or reserved address"
    assert allowed.status == WebhookEvent.Status.DELIVERED
    [request] = receiver.received
    assert request.headers["Host"] == f"hooks.example.com:{receiver.port}"


@pytest.mark.parametrize("address, public", [
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False),
    ("fe80::1", False), ("fd00:ec2::254", False), ("::ffff:10.0.0.1", False), ("224.0.0.1", False),
    ("93.184.215.14", True), ("2606:4700::1111", True),
])
def test_addresses_are_public_only_when_globally_routable(address, public):
    assert address_is_public(address) is public


def test_a_rolled_secret_keeps_the_old_one_valid_for_24_hours_and_not_after(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    verify = readme_verify()
    old = endpoint.secret
    with time_machine.travel(timezone.now(), tick=False) as clock:
        new = webhook_secret_roll(endpoint=endpoint).secret
        clock.shift(timedelta(hours=23, minutes=59))
        send_test_event(customer, django_capture_on_commit_callbacks)
        clock.shift(timedelta(minutes=2))
        send_test_event(customer, django_capture_on_commit_callbacks)

        within, after = receiver.received
        assert verify(within.body, within.headers["Tollbooth-Signature"], old) is True
        assert verify(within.body, within.headers["Tollbooth-Signature"], new) is True
        assert verify(after.body, after.headers["Tollbooth-Signature"], old) is False
        assert verify(after.body, after.headers["Tollbooth-Signature"], new) is True
    assert new != old and new.startswith("whsec_")


def test_a_hanging_receiver_times_out_after_5_seconds_and_is_logged(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    release = threading.Event()
    receiver.answer(Answer(hold=release))
    try:
        event = send_test_event(customer, django_capture_on_commit_callbacks)
    finally:
        release.set()

    delivery = event.deliveries.get()
    assert delivery.error == "Timed out after 5 s"
    assert 5000 <= delivery.duration_ms < 7000
    assert event.status == WebhookEvent.Status.PENDING and event.next_attempt_at is not None


def test_a_huge_answer_is_read_only_up_to_the_cap(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    receiver.answer(Answer(status=200, stream_bytes=64 * 1024 * 1024))

    event = send_test_event(customer, django_capture_on_commit_callbacks)

    delivery = event.deliveries.get()
    assert delivery.response_body == "x" * RESPONSE_READ_BYTES
    assert delivery.succeeded is True
    assert delivery.duration_ms < 3000


def test_resend_posts_the_same_event_again_and_logs_it_as_manual(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    event = send_test_event(customer, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        webhook_event_resend(event=event)

    assert list(event.deliveries.order_by("started_at").values_list("manual", "succeeded")) == [(False, True), (True, True)]
    assert receiver.received[0].body == receiver.received[1].body


def test_a_failed_event_delivered_by_a_resend_counts_as_delivered(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    receiver.answer(Answer(status=500))
    event = send_test_event(customer, django_capture_on_commit_callbacks)
    WebhookEvent.objects.filter(pk=event.pk).update(status=WebhookEvent.Status.FAILED, next_attempt_at=None)

    with django_capture_on_commit_callbacks(execute=True):
        webhook_event_resend(event=event)

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.DELIVERED


def test_no_event_is_recorded_for_a_customer_without_an_endpoint(customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_test_send(customer=customer) is None
    assert WebhookEvent.objects.count() == 0


@pytest.fixture
def tls_receiver(monkeypatch):
    """An https endpoint for hooks.example.com on 127.0.0.1, its certificate from a test CA that
    stands in for the system's trusted roots (and DNS answering 127.0.0.1 for the name)."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.com").configure_cert(server_context)
    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", lambda self, purpose=None: ca.configure_trust(self))
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real("127.0.0.1" if host.endswith("example.com") else host, *a, **k))
    with Receiver(tls=server_context) as server:
        yield server


def test_https_goes_to_the_checked_address_with_the_name_for_sni_and_the_certificate(customer, tls_receiver, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOKS_ALLOW_HTTP = False
    webhook_endpoint_set(customer=customer, url=f"https://hooks.example.com:{tls_receiver.port}/in")

    event = send_test_event(customer, django_capture_on_commit_callbacks)

    assert event.status == WebhookEvent.Status.DELIVERED
    assert tls_receiver.received[0].headers["Host"] == f"hooks.example.com:{tls_receiver.port}"


def test_a_certificate_for_another_name_is_refused(customer, tls_receiver, django_capture_on_commit_callbacks):
    webhook_endpoint_set(customer=customer, url=f"https://other.example.com:{tls_receiver.port}/in")

    event = send_test_event(customer, django_capture_on_commit_callbacks)

    assert tls_receiver.received == []
    assert event.deliveries.get().error == "SSLError: hostname 'other.example.com' doesn't match 'hooks.example.com'"


def test_settled_events_are_forgotten_after_30_days_and_pending_ones_kept(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    from notifications.tasks import webhook_events_prune

    receiver.answer(Answer(status=200), Answer(status=500))
    delivered = send_test_event(customer, django_capture_on_commit_callbacks)
    pending = send_test_event(customer, django_capture_on_commit_callbacks)

    with time_machine.travel(timezone.now() + timedelta(days=31)):
        assert webhook_events_prune() == 2  # the event and its one attempt

    assert list(WebhookEvent.objects.values_list("pk", flat=True)) == [pending.pk]
    assert not WebhookEvent.objects.filter(pk=delivered.pk).exists()
