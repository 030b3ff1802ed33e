"""The outbox against a real broker that goes away: commits keep their tasks, sent exactly once."""
from __future__ import annotations

import re
import socket
import threading
from contextlib import contextmanager

import pytest
from celery import current_app
from django.core import mail
from django.db import transaction
from django.urls import reverse

from accounts.models import ApiKey, Customer
from accounts.services import api_key_issue
from accounts.tasks import welcome_email_send
from config.settings import celery_broker_transport_options
from outbox import enqueue, run_once
from outbox.models import OutboxTask, TaskReceipt
from outbox.services import outbox_task_send
from outbox.tasks import outbox_drain
from tests.page_factories import seeded_public_plans, signup_data
from tests.servers import RedisServer

pytestmark = pytest.mark.django_db

KEY_IN_PAGE = re.compile(r"sk_live_[0-9a-f]{64}")


@contextmanager
def celery_broker(url: str):
    """Publish to a real broker at `url` instead of running tasks in-process."""
    conf = current_app.conf
    # Celery prefers a CELERY_BROKER_URL in the environment to broker_url, but not to the read and
    # write URLs; the transport options are the ones the settings give a broker at `url`.
    changes = {"broker_url": url, "broker_read_url": url, "broker_write_url": url, "task_always_eager": False,
               "broker_transport_options": celery_broker_transport_options(url)}
    saved = {name: conf[name] for name in changes}
    _forget_broker_connections()
    conf.update(changes)
    try:
        yield
    finally:
        _forget_broker_connections()
        conf.update(saved)


def _forget_broker_connections() -> None:
    # Celery keeps one connection and producer pool for the app's life (a process never
    # changes brokers); these tests do, so the pools are dropped as after a fork.
    current_app._after_fork()


def redis_again(stopped: RedisServer, workdir) -> RedisServer:
    """A new redis-server on the port of one that was killed: the broker coming back."""
    server = RedisServer(workdir)
    server.port, server.url = stopped.port, stopped.url
    return server


def broker_deliver(url: str, *, times: int = 1) -> list[str]:
    """Take every waiting message off the broker and run its task `times` times, as a worker
    that crashed before acknowledging would; returns the task names delivered."""
    delivered = []
    for declared in current_app.conf.task_queues:  # tasks are routed to a queue by their kind
        # A connection per queue: kombu's SimpleQueue, once closed, leaves its connection
        # reading nothing from the next queue.
        with current_app.connection_for_read(url) as connection:
            queue = connection.SimpleQueue(declared.name)
            while True:
                try:
                    message = queue.get(timeout=0.5)
                except queue.Empty:
                    break
                args, kwargs, _ = message.payload
                for _ in range(times):
                    current_app.tasks[message.headers["task"]].apply(args=args, kwargs=kwargs, throw=True)
                message.ack()
                delivered.append(message.headers["task"])
            queue.close()
    return delivered


@pytest.fixture
def broker(tmp_path):
    with RedisServer(tmp_path) as server, celery_broker(server.url):
        yield server


def test_with_the_broker_down_signup_succeeds_and_the_welcome_email_follows_once(
    client, broker, tmp_path, django_capture_on_commit_callbacks
):
    seeded_public_plans()
    broker.kill()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("signup"), signup_data(email="ada@example.com", plan="starter"))
    welcome = client.get(response["Location"])

    assert response.status_code == 302 and welcome.status_code == 200
    assert KEY_IN_PAGE.search(welcome.content.decode())
    pending = OutboxTask.objects.get(task=welcome_email_send.name)
    assert pending.sent_at is None and pending.attempts == 1 and "OperationalError" in pending.last_error
    assert mail.outbox == []

    with redis_again(broker, tmp_path):
        assert outbox_drain() == 1
        assert outbox_drain() == 0
        # Delivered twice, as after a worker crash before its ack: still one email.
        assert broker_deliver(broker.url, times=2) == [welcome_email_send.name]

    assert [m.to for m in mail.outbox] == [["ada@example.com"]]
    assert "Welcome to Tollbooth" in mail.outbox[0].subject
    assert OutboxTask.objects.get(pk=pending.pk).sent_at is not None


def test_with_the_broker_down_rotation_shows_the_new_key_and_the_email_follows_once(
    client, broker, tmp_path, customer, django_capture_on_commit_callbacks
):
    old = api_key_issue(customer=customer, name="prod")
    client.force_login(customer.owner)
    broker.kill()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("portal-key-rotate", args=[old.key.pk]), {"grace_days": "0"})
    page = client.get(response["Location"])

    assert response.status_code == 302 and KEY_IN_PAGE.search(page.content.decode())
    assert not ApiKey.objects.get(pk=old.key.pk).is_active()
    assert OutboxTask.objects.filter(sent_at__isnull=True).count() == 1

    with redis_again(broker, tmp_path):
        assert outbox_drain() == 1
        broker_deliver(broker.url, times=2)

    assert len(mail.outbox) == 1 and "was rotated" in mail.outbox[0].subject


@pytest.fixture
def hung_broker():
    """A broker that accepts connections and never answers (a stalled Redis or network)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(server.accept()) for _ in range(64)], daemon=True).start()
    with celery_broker(f"redis://127.0.0.1:{server.getsockname()[1]}/0"):
        yield
    server.close()


def test_a_hung_broker_does_not_hold_the_signup_the_row_waits_instead(
    client, hung_broker, django_capture_on_commit_callbacks
):
    seeded_public_plans()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("signup"), signup_data(email="cy@example.com", plan="free"))

    assert response.status_code == 302 and Customer.objects.filter(owner__email="cy@example.com").exists()
    pending = OutboxTask.objects.get()
    assert pending.sent_at is None and "Timeout" in pending.last_error


def test_a_send_the_broker_took_is_marked_sent_and_not_drained_again(broker, customer):
    with transaction.atomic():
        enqueue(welcome_email_send, customer_id=customer.pk)
    # Test transactions never commit, so run what the commit would.
    row = OutboxTask.objects.get()

    assert outbox_task_send(outbox_id=row.pk) is True
    assert outbox_task_send(outbox_id=row.pk) is False
    assert outbox_drain() == 0
    assert broker_deliver(broker.url) == [welcome_email_send.name]
    assert len(mail.outbox) == 1


def test_a_rolled_back_transaction_leaves_no_task_behind(customer):
    with pytest.raises(RuntimeError, match="changed my mind"):
        with transaction.atomic():
            enqueue(welcome_email_send, customer_id=customer.pk)
            raise RuntimeError("changed my mind")

    assert not OutboxTask.objects.exists()


def test_in_eager_mode_the_task_runs_on_commit(customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(welcome_email_send, customer_id=customer.pk)

    assert len(mail.outbox) == 1 and OutboxTask.objects.get().sent_at is not None


def test_work_that_fails_leaves_no_receipt_so_the_retry_does_it():
    done = []

    def flaky():
        if not done:
            done.append("tried")
            raise OSError("SMTP said no")
        done.append("sent")

    with pytest.raises(OSError, match="SMTP said no"):
        run_once(key="email:1", work=flaky)
    assert run_once(key="email:1", work=flaky) is True
    assert run_once(key="email:1", work=flaky) is False
    assert done == ["tried", "sent"] and TaskReceipt.objects.filter(key="email:1").count() == 1


def test_signup_without_a_broker_outage_sends_the_welcome_email_once(client, django_capture_on_commit_callbacks):
    seeded_public_plans()

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("signup"), signup_data(email="bo@example.com", plan="free"))

    assert Customer.objects.count() == 1 and len(mail.outbox) == 1
    assert OutboxTask.objects.get().sent_at is not None
