"""The outbox on RabbitMQ (issue 18): with CELERY_BROKER_URL=amqp://... a task sent through the
outbox runs once in a real `celery worker`, and a broker outage loses nothing.

These run against the RabbitMQ that the `rabbitmq_url` fixture picks (tests/faults/conftest.py):
they fail, not skip, when CELERY_BROKER_URL names one that does not answer. Each test puts every
queue under names of its own and deletes them afterwards, so runs sharing a broker never meet."""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from honcho.environ import parse_procfile

from config.settings import celery_broker_transport_options
from outbox import enqueue
from outbox.models import OutboxTask
from outbox.tasks import outbox_drain
from tests.faults.brokers import (
    CuttableProxy,
    amqp_problem,
    queue_depth,
    queues_delete,
    queues_of_run,
    rabbitmq_choice,
    run_suffix,
)
from tests.faults.mailbox import mailbox_subjects
from tests.faults.recorded import recorded_run, recorded_runs
from tests.page_factories import seeded_public_plans, signup_data
from tests.payments import wait_until
from tests.servers import ROOT, free_port, stop
from tests.servers import test_database_url as database_url_for_children

BROKER_TIMEOUT = celery_broker_transport_options("amqp://")["connect_timeout"]
# A publish that cannot reach the broker gives up within Celery's publish retries (3 after the
# first try), each bounded by the broker timeout; the rest is the request's own work.
PUBLISH_GIVES_UP_WITHIN = 4 * BROKER_TIMEOUT + 3.0


def run_queue_names(suffix: str) -> list[str]:
    return [queue.name for queue in _run_settings(suffix)["task_queues"]]


def _run_settings(suffix: str) -> dict:
    return queues_of_run(suffix, settings.CELERY_TASK_QUEUES, settings.CELERY_TASK_ROUTES,
                         settings.CELERY_TASK_DEFAULT_QUEUE)


@contextmanager
def run_queues(url: str):
    """A suffix for this test's queues; the queues are deleted from the broker afterwards."""
    suffix = run_suffix()
    try:
        yield suffix
    finally:
        queues_delete(url, run_queue_names(suffix))


@contextmanager
def publishing_to(url: str, suffix: str):
    """This process publishes to the broker at `url`, into this test's queues, with the transport
    options the settings give an amqp broker, instead of running tasks in-process."""
    conf = current_app.conf
    # Celery prefers a CELERY_BROKER_URL in the environment to broker_url, but not to these two.
    changes = {"broker_url": url, "broker_read_url": url, "broker_write_url": url,
               "broker_transport_options": celery_broker_transport_options(url),
               "task_always_eager": False, **_run_settings(suffix)}
    saved = {name: conf[name] for name in changes}
    _forget_broker()
    conf.update(changes)
    try:
        yield
    finally:
        _forget_broker()
        conf.update(saved)


def _forget_broker() -> None:
    # Celery keeps one connection pool, producer pool and router for the app's life (a process
    # never changes brokers or queues); these tests do, so all three are dropped.
    current_app._after_fork()
    current_app.__dict__.pop("amqp", None)


class RabbitWorker:
    """The Procfile's `worker` line, run as written but serving every queue of this test, on
    RabbitMQ (straight, not through any proxy), the test database, each email a file."""

    def __init__(self, *, url: str, suffix: str, logs: Path, mail: Path) -> None:
        args = shlex.split(parse_procfile((ROOT / "Procfile").read_text()).processes["worker"])
        assert args[:3] == ["celery", "-A", "config"] and "worker" in args, args
        index = args.index("--queues")
        args[index + 1] = ",".join(run_queue_names(suffix))
        self.args = args
        self.log_path = logs / "rabbit-worker.log"
        # Without CELERY_BROKER_URL: Celery would prefer it to the worker settings' broker.
        environ = {name: value for name, value in os.environ.items() if name != "CELERY_BROKER_URL"}
        self.env = {**environ, "DATABASE_URL": database_url_for_children(), "REDIS_URL": settings.REDIS_URL,
                    "TEST_REDIS_DB": str(settings.TEST_REDIS_DB),
                    "DJANGO_SETTINGS_MODULE": "tests.faults.rabbitmq_worker_settings",
                    "RABBITMQ_TEST_URL": url, "TEST_QUEUE_SUFFIX": suffix, "FAULT_MAIL_DIR": str(mail)}
        self.process: subprocess.Popen | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def __enter__(self) -> "RabbitWorker":
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", *self.args], cwd=ROOT, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        started = wait_until(lambda: "ready." in self.log() or self.process.poll() is not None, timeout=120)
        assert started and self.process.poll() is None, self.log()
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)


def timed(work) -> float:
    started = time.monotonic()
    work()
    return time.monotonic() - started


def enqueue_recorded(token: str, folder: Path) -> None:
    with transaction.atomic():
        enqueue(recorded_run, token=token, folder=str(folder))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_on_rabbitmq_a_signup_email_and_an_outbox_task_each_run_once_in_a_real_worker(rabbitmq_url, client, tmp_path):
    seeded_public_plans()
    runs, mail = tmp_path / "runs", tmp_path / "mail"
    runs.mkdir(), mail.mkdir()

    with run_queues(rabbitmq_url) as suffix, publishing_to(rabbitmq_url, suffix), \
            RabbitWorker(url=rabbitmq_url, suffix=suffix, logs=tmp_path, mail=mail) as worker:
        response = client.post(reverse("signup"), signup_data(email="ada@example.com", plan="free"))
        enqueue_recorded("first", runs)

        assert response.status_code == 302
        assert wait_until(lambda: recorded_runs(runs) == {"first": 1} and len(mailbox_subjects(mail)) == 1,
                          timeout=30), worker.log()
        assert wait_until(lambda: all(queue_depth(rabbitmq_url, name) == 0 for name in run_queue_names(suffix)))
        time.sleep(1)  # a second delivery would land within this

    assert recorded_runs(runs) == {"first": 1}
    assert [subject.split(",")[0] for subject in mailbox_subjects(mail)] == ["Welcome to Tollbooth"]
    assert OutboxTask.objects.filter(sent_at__isnull=True).count() == 0
    assert OutboxTask.objects.filter(attempts=1).count() == 2


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_rabbitmq_outage_loses_nothing_and_the_drain_sends_each_task_once(rabbitmq_url, client, tmp_path):
    seeded_public_plans()
    runs, mail = tmp_path / "runs", tmp_path / "mail"
    runs.mkdir(), mail.mkdir()

    with run_queues(rabbitmq_url) as suffix, CuttableProxy(rabbitmq_url) as proxy, publishing_to(proxy.url, suffix):
        enqueue_recorded("before", runs)  # sent: the app now holds a pooled connection
        assert OutboxTask.objects.get().sent_at is not None

        proxy.cut("drop")  # the pooled connection dies and every new one is reset
        took = {"signup": timed(lambda: client.post(reverse("signup"), signup_data(email="bo@example.com",
                                                                                  plan="free")))}
        for token in ("dropped-1", "dropped-2"):
            took[token] = timed(lambda: enqueue_recorded(token, runs))
        proxy.cut("hang")  # accepted, never answered
        took["hung"] = timed(lambda: enqueue_recorded("hung", runs))

        pending = OutboxTask.objects.filter(sent_at__isnull=True)
        assert pending.count() == 4, list(pending.values("task", "last_error"))
        assert all(row.attempts == 1 and row.last_error.startswith("OperationalError") for row in pending)
        assert "timed out" in pending.get(kwargs__token="hung").last_error
        assert max(took.values()) < PUBLISH_GIVES_UP_WITHIN, took
        assert outbox_drain() == 0  # the beat drain while the broker is still away sends nothing

        proxy.restore()
        assert outbox_drain() == 4
        assert outbox_drain() == 0
        # Nothing consumed these queues yet: each publish declared its queue, so the broker kept
        # every message even with no worker around, as after a broker restart.
        assert sum(queue_depth(rabbitmq_url, name) for name in run_queue_names(suffix)) == 5

        with RabbitWorker(url=rabbitmq_url, suffix=suffix, logs=tmp_path, mail=mail) as worker:
            expected = {"before": 1, "dropped-1": 1, "dropped-2": 1, "hung": 1}
            assert wait_until(lambda: recorded_runs(runs) == expected and len(mailbox_subjects(mail)) == 1,
                              timeout=30), (recorded_runs(runs), worker.log())
            assert wait_until(lambda: all(queue_depth(rabbitmq_url, name) == 0 for name in run_queue_names(suffix)))
            time.sleep(1)  # a second delivery would land within this

    assert recorded_runs(runs) == expected
    assert [subject.split(",")[0] for subject in mailbox_subjects(mail)] == ["Welcome to Tollbooth"]
    assert not OutboxTask.objects.filter(sent_at__isnull=True).exists()


# The rule itself: when the RabbitMQ tests run, fail or skip.

@pytest.fixture
def hanging_port():
    """A port that accepts connections and never says a word."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(16)], daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_a_named_rabbitmq_that_does_not_answer_fails_the_tests():
    port = free_port()  # nothing listens there
    action, why = rabbitmq_choice({"CELERY_BROKER_URL": f"amqp://app:s3cret@127.0.0.1:{port}/tb"},
                                  default_url=f"amqp://guest:guest@127.0.0.1:{free_port()}//")

    assert action == "fail"
    assert f"127.0.0.1:{port}" in why and "s3cret" not in why


def test_a_named_port_that_accepts_but_never_speaks_amqp_fails_within_the_probe_timeout(hanging_port):
    started = time.monotonic()
    action, why = rabbitmq_choice({"CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{hanging_port}//"})

    assert action == "fail" and "does not answer" in why
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("named", ["", "redis://127.0.0.1:6379/0"])
def test_with_no_rabbitmq_named_and_none_answering_the_tests_skip(named):
    environ = {"CELERY_BROKER_URL": named} if named else {}
    action, why = rabbitmq_choice(environ, default_url=f"amqp://guest:guest@127.0.0.1:{free_port()}//")

    assert action == "skip" and "no RabbitMQ named" in why


def test_a_rabbitmq_that_answers_is_used_named_or_not(rabbitmq_url):
    assert amqp_problem(rabbitmq_url) is None
    assert rabbitmq_choice({"CELERY_BROKER_URL": rabbitmq_url}) == ("run", rabbitmq_url)
    assert rabbitmq_choice({}, default_url=rabbitmq_url) == ("run", rabbitmq_url)
