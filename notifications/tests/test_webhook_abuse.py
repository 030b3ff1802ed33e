"""Outbound webhooks that cannot be turned into a weapon: send limits, a wall-clock deadline,
addresses that are not globally routable, and customers choosing what they receive."""
from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
import time_machine
from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ValidationError
from django.urls import reverse

from notifications.limits import ENDPOINT_DELIVERIES_PER_MINUTE, MANUAL_PER_DAY, MANUAL_PER_MINUTE, SendLimited
from notifications.models import WebhookEndpoint, WebhookEvent
from notifications import outbound
from notifications.outbound import TIMED_OUT, TIMEOUT_SECONDS, address_is_public, webhook_post
from notifications.services import (
    CLAIM_SECONDS, RETRY_DELAYS, UNFINISHED, WORKER_TIME_LIMIT, webhook_endpoint_set, webhook_event_create,
    webhook_event_resend, webhook_test_send,
)
from notifications.tasks import webhook_event_deliver, webhook_event_resend as resend_task, webhook_retries_run
from notifications.validation import webhook_url_validate
from tests.factories import CustomerFactory

from .receiver import Answer

pytestmark = pytest.mark.django_db
SETTINGS_URL = "/portal/settings/"
# Five seconds into a UTC minute: a test's sends all fall in one minute's window.
MINUTE = datetime(2026, 3, 2, 10, 0, 5, tzinfo=dt_timezone.utc)


@pytest.fixture
def endpoint(customer, receiver) -> WebhookEndpoint:
    return webhook_endpoint_set(customer=customer, url=receiver.url).endpoint


@pytest.fixture
def portal(client, customer):
    client.force_login(customer.owner)
    return client


def deliver_test_event(customer, capture) -> WebhookEvent:
    with capture(execute=True):
        event = webhook_test_send(customer=customer)
    event.refresh_from_db()
    return event


# 1. Flooding a third party ------------------------------------------------------------------

def test_test_events_stop_after_10_a_minute_with_a_clear_message(portal, customer, endpoint):
    with time_machine.travel(MINUTE, tick=False):
        statuses = [portal.post(reverse("portal-settings-webhook-test")).status_code for _ in range(MANUAL_PER_MINUTE)]
        refused = portal.post(reverse("portal-settings-webhook-test"))

    assert statuses == [302] * MANUAL_PER_MINUTE
    assert refused.status_code == 429
    assert refused["Retry-After"] == "55"
    assert "You can send at most 10 test events and resends a minute. Try again in 55 s." in refused.content.decode()
    assert WebhookEvent.objects.filter(customer=customer).count() == MANUAL_PER_MINUTE


def test_resends_share_the_budget_and_the_next_minute_allows_more(portal, customer, endpoint):
    with time_machine.travel(MINUTE, tick=False) as clock:
        event = webhook_test_send(customer=customer)
        resend = reverse("portal-settings-webhook-resend", args=[event.pk])
        statuses = [portal.post(resend).status_code for _ in range(MANUAL_PER_MINUTE - 1)]
        assert portal.post(resend).status_code == 429
        assert portal.post(reverse("portal-settings-webhook-test")).status_code == 429
        clock.shift(timedelta(minutes=1))
        assert portal.post(resend).status_code == 302

    assert statuses == [302] * (MANUAL_PER_MINUTE - 1)


def test_another_customers_sends_do_not_count_against_mine(customer, endpoint, receiver):
    other = CustomerFactory()
    webhook_endpoint_set(customer=other, url=receiver.url)
    with time_machine.travel(MINUTE, tick=False):
        for _ in range(MANUAL_PER_MINUTE):
            webhook_test_send(customer=other)
        with pytest.raises(SendLimited):
            webhook_test_send(customer=other)
        assert webhook_test_send(customer=customer) is not None


def test_a_customer_gets_at_most_100_manual_sends_a_day(customer, endpoint):
    with time_machine.travel(MINUTE, tick=False) as clock:
        event = webhook_test_send(customer=customer)
        for sent in range(1, MANUAL_PER_DAY):
            if sent % MANUAL_PER_MINUTE == 0:
                clock.shift(timedelta(minutes=1))
            webhook_event_resend(event=event)
        clock.shift(timedelta(minutes=1))
        with pytest.raises(SendLimited, match=r"at most 100 test events and resends a day\. Try again after midnight UTC"):
            webhook_test_send(customer=customer)
        clock.move_to(MINUTE + timedelta(days=1))
        assert webhook_test_send(customer=customer) is not None


def test_an_endpoint_gets_60_deliveries_a_minute_and_the_rest_is_postponed_not_failed(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    with time_machine.travel(MINUTE, tick=False) as clock:
        with django_capture_on_commit_callbacks(execute=True):
            events = [webhook_event_create(customer_id=customer.pk, type=WebhookEvent.Type.INVOICE_PAID, data={"n": n})
                      for n in range(ENDPOINT_DELIVERIES_PER_MINUTE + 1)]
        last = WebhookEvent.objects.get(pk=events[-1].pk)

        assert len(receiver.received) == ENDPOINT_DELIVERIES_PER_MINUTE
        assert (last.status, last.attempts, last.deliveries.count()) == (WebhookEvent.Status.PENDING, 0, 0)
        assert last.next_attempt_at == datetime(2026, 3, 2, 10, 1, 0, tzinfo=dt_timezone.utc)
        assert webhook_retries_run() == 0  # not before the next minute

        clock.move_to(last.next_attempt_at)
        assert webhook_retries_run() == 1

    last.refresh_from_db()
    assert last.status == WebhookEvent.Status.DELIVERED
    assert list(last.deliveries.values_list("succeeded", flat=True)) == [True]
    assert json.loads(receiver.received[-1].body)["data"] == {"n": ENDPOINT_DELIVERIES_PER_MINUTE}


def test_a_resend_over_the_endpoints_minute_goes_out_with_the_next_automatic_attempts(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    with time_machine.travel(MINUTE, tick=False) as clock:
        with django_capture_on_commit_callbacks(execute=True):
            events = [webhook_event_create(customer_id=customer.pk, type=WebhookEvent.Type.INVOICE_PAID, data={})
                      for _ in range(ENDPOINT_DELIVERIES_PER_MINUTE)]
        resend_task(event_id=events[0].pk)
        first = WebhookEvent.objects.get(pk=events[0].pk)
        assert (first.status, first.deliveries.count()) == (WebhookEvent.Status.PENDING, 1)

        clock.move_to(first.next_attempt_at)
        webhook_retries_run()

    first.refresh_from_db()
    assert first.status == WebhookEvent.Status.DELIVERED
    assert first.deliveries.count() == 2
    assert len(receiver.received) == ENDPOINT_DELIVERIES_PER_MINUTE + 1


# 2. A trickling receiver, and time limits ---------------------------------------------------

@pytest.mark.parametrize("body_only", [False, True], ids=["from-the-status-line", "body-after-a-prompt-head"])
def test_a_trickling_receiver_is_cut_off_at_the_deadline_and_recorded_as_failed(customer, endpoint, receiver, body_only, django_capture_on_commit_callbacks):
    # A byte a second keeps every single read well inside a per-read timeout; only the deadline ends it.
    receiver.answer(Answer(trickle=1.0, trickle_body=body_only, trickle_bytes=12))

    event = deliver_test_event(customer, django_capture_on_commit_callbacks)

    delivery = event.deliveries.get()
    assert (delivery.succeeded, delivery.response_status, delivery.error) == (False, None, "Timed out after 5 s")
    assert TIMEOUT_SECONDS * 1000 <= delivery.duration_ms < (TIMEOUT_SECONDS + 1) * 1000
    assert event.status == WebhookEvent.Status.PENDING
    assert event.next_attempt_at == delivery.started_at + timedelta(seconds=RETRY_DELAYS[0])


def raise_in(seconds: float, exc: type[BaseException]):
    """Raise `exc` in the main thread after `seconds`, as billiard does for a soft time limit."""
    def fire(signum, frame):
        raise exc()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return lambda: (signal.setitimer(signal.ITIMER_REAL, 0), signal.signal(signal.SIGALRM, previous))


def test_a_soft_time_limit_during_a_delivery_is_a_failed_attempt_with_backoff(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    release = threading.Event()
    receiver.answer(Answer(hold=release))
    restore = raise_in(0.5, SoftTimeLimitExceeded)
    try:
        event = deliver_test_event(customer, django_capture_on_commit_callbacks)
    finally:
        restore()
        release.set()

    delivery = event.deliveries.get()
    assert (delivery.succeeded, delivery.error) == (False, WORKER_TIME_LIMIT)
    assert 400 <= delivery.duration_ms < 2000
    assert (event.status, event.attempts) == (WebhookEvent.Status.PENDING, 1)
    assert event.next_attempt_at == delivery.started_at + timedelta(seconds=RETRY_DELAYS[0])


def test_a_worker_killed_mid_delivery_leaves_a_failed_attempt_that_counts_towards_giving_up(customer, endpoint, receiver, django_capture_on_commit_callbacks):
    release = threading.Event()
    receiver.answer(Answer(hold=release), Answer(status=500))
    with time_machine.travel(MINUTE, tick=False):
        event = webhook_test_send(customer=customer)  # its delivery is run below, as a worker would
        restore = raise_in(0.5, SystemExit)  # nothing of ours runs after it, as after a hard time limit
        try:
            with pytest.raises(SystemExit):
                webhook_event_deliver(event_id=event.pk)
        finally:
            restore()
            release.set()

    event.refresh_from_db()
    killed = event.deliveries.get()
    assert (killed.succeeded, killed.error) == (False, UNFINISHED)
    assert event.next_attempt_at == killed.started_at + timedelta(seconds=CLAIM_SECONDS)

    with time_machine.travel(event.next_attempt_at + timedelta(seconds=1), tick=False):
        webhook_retries_run()
    event.refresh_from_db()
    second = event.deliveries.order_by("-started_at", "-pk").first()
    assert second.response_status == 500
    # The second failure: the backoff goes on from where the killed attempt left it.
    assert event.next_attempt_at == second.started_at + timedelta(seconds=RETRY_DELAYS[1])


def test_delivery_tasks_have_time_limits_inside_the_claim():
    for task in (webhook_event_deliver, resend_task):
        assert TIMEOUT_SECONDS < task.soft_time_limit < task.time_limit < CLAIM_SECONDS


# 4. Addresses -------------------------------------------------------------------------------

@pytest.mark.parametrize("address, public", [
    # NAT64 (64:ff9b::/96): judged by the IPv4 address it carries.
    ("64:ff9b::7f00:1", False), ("64:ff9b::a00:1", False), ("64:ff9b::a9fe:a9fe", False), ("64:ff9b::5db8:d70e", True),
    # Local-use NAT64 (64:ff9b:1::/48): refused whatever it carries.
    ("64:ff9b:1::7f00:1", False), ("64:ff9b:1::5db8:d70e", False),
    # 6to4 (2002::/16): judged by the IPv4 address it carries.
    ("2002:7f00:1::", False), ("2002:a9fe:a9fe::1", False), ("2002:c0a8:101::1", False), ("2002:5db8:d70e::1", True),
    # Teredo (2001::/32): refused.
    ("2001::1", False), ("2001:0:5db8:d70e::1", False), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
    # IPv4-mapped (::ffff:0:0/96): the IPv4 address is the one connected to.
    ("::ffff:127.0.0.1", False), ("::ffff:169.254.169.254", False), ("::ffff:10.0.0.1", False),
    ("::ffff:93.184.215.14", True),
    # IPv4-compatible (::/96, deprecated) and IPv4-translated (::ffff:0:0:0/96): refused.
    ("::127.0.0.1", False), ("::5db8:d70e", False), ("::ffff:0:7f00:1", False), ("::ffff:0:5db8:d70e", False),
    # Site-local (fec0::/10, deprecated): refused.
    ("fec0::1", False), ("feff::1", False),
    # Plain addresses.
    ("127.0.0.1", False), ("169.254.169.254", False), ("::1", False), ("::", False), ("fe80::1%eth0", False),
    ("fd00:ec2::254", False), ("ff02::1", False),
    ("93.184.215.14", True), ("8.8.8.8", True), ("2606:4700::1111", True), ("2a00:1450:4001:80e::200e", True),
])
def test_only_globally_routable_addresses_are_public(address, public):
    assert address_is_public(address) is public


@pytest.mark.parametrize("host", ["[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[::127.0.0.1]", "[fec0::1]", "[2001::1]"])
def test_urls_naming_an_embedded_private_address_are_refused_when_saved(settings, host):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError, match="private or local address"):
        webhook_url_validate(f"https://{host}/hooks")


# 5. Event-type filters and the request in the delivery log ----------------------------------

def test_an_endpoint_gets_only_the_types_it_subscribed_to_and_always_the_test_event(customer, receiver, django_capture_on_commit_callbacks):
    webhook_endpoint_set(customer=customer, url=receiver.url, event_types=["invoice.paid", "key.rotated"])

    with django_capture_on_commit_callbacks(execute=True):
        paid = webhook_event_create(customer_id=customer.pk, type="invoice.paid", data={})
        issued = webhook_event_create(customer_id=customer.pk, type="invoice.issued", data={})
        test = webhook_test_send(customer=customer)

    assert issued is None
    assert sorted(WebhookEvent.objects.values_list("type", flat=True)) == ["invoice.paid", "webhook.test"]
    assert [json.loads(r.body)["id"] for r in receiver.received] == [paid.event_id, test.event_id]


def test_no_types_or_every_type_means_all_and_a_url_change_keeps_the_choice(customer):
    every = ["usage.threshold", "spend_cap.reached", "invoice.issued", "invoice.paid", "invoice.payment_failed",
             "key.rotated", "plan.changed", "trial.ending"]
    endpoint = webhook_endpoint_set(customer=customer, url="https://a.example.com/", event_types=every).endpoint
    assert endpoint.event_types == [] and endpoint.receives("trial.ending")

    webhook_endpoint_set(customer=customer, url="https://a.example.com/", event_types=["plan.changed", "invoice.paid"])
    endpoint = webhook_endpoint_set(customer=customer, url="https://b.example.com/").endpoint
    assert endpoint.event_types == ["invoice.paid", "plan.changed"]
    with pytest.raises(ValidationError, match="Unknown event type: webhook.test"):
        webhook_endpoint_set(customer=customer, url="https://a.example.com/", event_types=["webhook.test"])


def test_the_endpoint_form_saves_the_ticked_types_and_shows_them_ticked(portal, customer):
    response = portal.post(reverse("portal-settings-webhook"),
                           {"url": "https://hooks.example.com/in", "event_types": ["invoice.paid", "trial.ending"]})

    assert response.status_code == 302
    assert WebhookEndpoint.objects.get(customer=customer).event_types == ["invoice.paid", "trial.ending"]
    page = portal.get(SETTINGS_URL).content.decode()
    boxes = re.findall(r'<input type="checkbox" name="event_types" value="([^"]+)"[^>]*>', page)
    ticked = re.findall(r'<input type="checkbox" name="event_types" value="([^"]+)"[^>]*checked>', page)
    assert len(boxes) == 8 and "webhook.test" not in boxes
    assert ticked == ["invoice.paid", "trial.ending"]

    refused = portal.post(reverse("portal-settings-webhook"), {"url": "https://hooks.example.com/in", "event_types": ["nope"]})
    assert refused.status_code == 200
    assert "Select a valid choice. nope is not one of the available choices." in refused.content.decode()


def test_each_attempt_keeps_the_request_it_sent_and_the_log_shows_it_without_the_secret(portal, customer, endpoint, receiver, django_capture_on_commit_callbacks):
    event = deliver_test_event(customer, django_capture_on_commit_callbacks)
    [request] = receiver.received
    delivery = event.deliveries.get()

    sent = dict(delivery.request_headers)
    assert sent["Tollbooth-Signature"] == request.headers["Tollbooth-Signature"]
    assert sent["Content-Type"] == "application/json"
    assert sent["Host"] == request.headers["Host"] and sent["User-Agent"] == request.headers["User-Agent"]
    assert delivery.request_body.encode() == request.body

    page = portal.get(SETTINGS_URL).content.decode()
    assert f"Tollbooth-Signature: {request.headers['Tollbooth-Signature']}" in page
    assert json.dumps(event.event_id) in page.replace("&quot;", '"')
    assert endpoint.secret not in page


def test_a_name_that_takes_longer_than_the_deadline_to_resolve_is_a_timed_out_attempt(monkeypatch):
    """The system resolver cannot be interrupted: the delivery stops waiting for it at the deadline."""
    real_getaddrinfo = socket.getaddrinfo

    def slow_resolver(host, *args, **kwargs):
        if host == "slow-dns.example":
            time.sleep(3)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(outbound, "TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    started = time.monotonic()
    result = webhook_post(url="https://slow-dns.example/hook", body=b"{}", headers={})
    assert (result.status, result.error) == (None, TIMED_OUT)
    assert time.monotonic() - started < 2
