"""Billing keeps moving while every webhook receiver hangs (issue 15): the Procfile runs one
worker per queue and CELERY_TASK_ROUTES sends each task to its kind's queue (README "Deploying").

The slow test starts the Procfile's own worker lines as real `celery worker` processes on the
test database and broker, so a Procfile that goes back to one shared worker fails it."""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from honcho.environ import parse_procfile

from billing.models import Invoice
from billing.tasks import month_close
from config.celery import app as celery_app
from core.periods import period_of, period_previous
from notifications.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from notifications.services import webhook_event_create, webhook_secret_new
from tests.factories import CustomerFactory, seeded_plan
from tests.payments import card_on_file, wait_until
from tests.servers import ROOT, stop
from tests.servers import test_database_url as database_url_for_children

STRIPE_ENV = ("STRIPE_API_BASE", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")
# Tasks that must never wait behind a webhook delivery or an email.
BILLING_TASKS = ("billing.tasks.month_close", "billing.tasks.invoices_issued_dispatch",
                 "billing.tasks.invoice_charge", "billing.tasks.invoices_dunning_run")


def procfile_workers() -> dict[str, list[str]]:
    """Each Procfile process that runs `celery ... worker`, as its argument list (honcho's parse)."""
    commands = {name: shlex.split(command) for name, command in
                parse_procfile((ROOT / "Procfile").read_text()).processes.items()}
    return {name: args for name, args in commands.items() if args[:1] == ["celery"] and "worker" in args}


def consumed_queues(args: list[str]) -> set[str]:
    for flag in ("--queues", "-Q"):
        if flag in args:
            return set(args[args.index(flag) + 1].split(","))
    return {queue.name for queue in celery_app.conf.task_queues}  # without -Q: every declared queue


def queue_of(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name)["queue"].name


def our_tasks() -> list[str]:
    celery_app.loader.import_default_modules()
    return sorted(name for name in celery_app.tasks if not name.startswith("celery."))


def test_every_task_has_a_worker_and_billing_shares_its_workers_with_no_webhook_or_email():
    workers = {name: consumed_queues(args) for name, args in procfile_workers().items()}
    tasks = our_tasks()

    unserved = [name for name in tasks if not any(queue_of(name) in queues for queues in workers.values())]
    assert unserved == []
    slow_kinds = [name for name in tasks if name.startswith("notifications.tasks.webhook_") or "_email_" in name]
    assert {queue_of(name) for name in slow_kinds} == {"webhooks", "email"}
    for task in BILLING_TASKS:
        for name, queues in workers.items():
            if queue_of(task) in queues:
                sharing = [slow for slow in slow_kinds if queue_of(slow) in queues]
                assert sharing == [], f"Procfile worker {name!r} runs {task} behind {sharing}"


class HangingReceiver:
    """A TCP server on loopback that accepts every connection and never answers, like a
    webhook receiver stuck on its own database."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                self.connections.append(self.sock.accept()[0])
            except OSError:
                return  # closed

    def __enter__(self) -> "HangingReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()
        for connection in self.connections:
            connection.close()


class ProcfileWorkers:
    """Every Procfile worker line, run as written (`celery` being this interpreter's), on the
    test database, the test broker and the embedded Stripe."""

    def __init__(self, *, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = {**os.environ, "DATABASE_URL": database_url_for_children(), "REDIS_URL": settings.REDIS_URL,
                    "TEST_REDIS_DB": str(settings.TEST_REDIS_DB),
                    "DJANGO_SETTINGS_MODULE": "tests.faults.worker_settings",
                    **{name: getattr(settings, name) for name in STRIPE_ENV}, **env}
        self.processes: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def tails(self) -> dict[str, str]:
        return {name: self.log(name)[-2000:] for name in self.processes}

    def __enter__(self) -> "ProcfileWorkers":
        for name, args in procfile_workers().items():
            with (self.logs / f"{name}.log").open("wb") as out:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", *args], cwd=ROOT, env=self.env, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
        for name, process in self.processes.items():
            started = wait_until(lambda: "ready." in self.log(name) or process.poll() is not None, timeout=120)
            assert started and process.poll() is None, f"{name}: {self.log(name)[-3000:]}"
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes.values():
            stop(process)



@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_outside_task")
def test_month_close_charges_every_invoice_while_every_webhook_receiver_hangs(stripe_server, broker_sends, tmp_path):
    # One event per endpoint (the per-endpoint rate limit would postpone a second one at once);
    # at 5 s a delivery this is minutes of webhook work for the two processes of one shared worker.
    # Measured on two busy cores: about 3 s with a worker per queue; 26 s with the old single
    # worker even when it reads the billing queue in turn, and minutes with the old single queue.
    endpoints, paying, bound = 40, 10, 15
    starter = seeded_plan("starter")
    period = period_previous(period_of(timezone.now()))
    customers = [CustomerFactory(plan=starter, created_at=timezone.now() - timedelta(days=70)) for _ in range(paying)]
    for customer in customers:
        card_on_file(customer)
    mailbox = tmp_path / "mail"
    mailbox.mkdir()

    with HangingReceiver() as receiver, ProcfileWorkers(logs=tmp_path, env={"FAULT_MAIL_DIR": str(mailbox)}) as workers:
        others = [CustomerFactory(plan=starter) for _ in range(endpoints - paying)]  # this month's: not billed
        for number, customer in enumerate([*customers, *others]):
            WebhookEndpoint.objects.create(customer=customer, url=f"{receiver.url}/hooks/{number}",
                                           secret=webhook_secret_new())
            webhook_event_create(customer_id=customer.pk, type=WebhookEvent.Type.TEST, data={"n": number})
        assert wait_until(lambda: len(receiver.connections) >= 2, timeout=60), workers.tails()
        started = time.monotonic()

        month_close.delay(period)

        def all_paid() -> bool:
            return Invoice.objects.filter(period=period, status=Invoice.Status.PAID).count() == paying

        paid = wait_until(all_paid, timeout=bound)
        took = time.monotonic() - started
        stuck = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING, attempts=0).count()
        logs = workers.tails()

    assert paid, f"not all paid within {bound} s: {logs}"
    assert Invoice.objects.filter(period=period).count() == paying, f"{took:.1f} s"
    # The webhooks were stuck all along: most events still had no finished attempt.
    assert stuck > endpoints // 2, logs
    assert not WebhookDelivery.objects.filter(succeeded=True).exists()
