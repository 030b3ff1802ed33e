"""Collection never silently stops (issue 13): a worker killed mid-email, two dunning runs at
once, and a month close while Redis holds usage it cannot hand over.

Real processes where the fault needs them: a `celery worker` started here (prefork, its child
SIGKILLed), a redis-server of our own (SIGKILLed), and the embedded Stripe (localstripe)."""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from billing.invoicing import invoices_issue_batch
from billing.models import Invoice, InvoiceLine, PaymentAttempt
from billing.tasks import UsageUnflushed, invoice_charge, invoices_dunning_run, month_close
from core.redis import redis_client
from core.periods import day_start, period_bounds, period_of, period_previous
from metering.batcher import meter_commits_send
from metering.models import UsageRecord
from outbox.models import TaskReceipt
from tests.factories import CustomerFactory, seeded_plan
from tests.payments import DECLINED_CHARGE_CARD, card_on_file, stripe_list, wait_until
from tests.servers import ROOT, RedisServer, stop
from tests.servers import test_database_url as database_url_for_children

from .mailbox import mailbox_subjects

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow,
              pytest.mark.usefixtures("celery_outside_task")]

STRIPE_ENV = ("STRIPE_API_BASE", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")


class CeleryWorker:
    """`celery worker` (prefork) on the test database, with the test Redis database as broker."""

    def __init__(self, *, log: Path, env: dict[str, str], concurrency: int = 1) -> None:
        self.log, self.concurrency = log, concurrency
        self.env = {**os.environ, "DATABASE_URL": database_url_for_children(), "REDIS_URL": settings.REDIS_URL,
                    "TEST_REDIS_DB": str(settings.TEST_REDIS_DB),
                    "DJANGO_SETTINGS_MODULE": "tests.faults.worker_settings",
                    **{name: getattr(settings, name) for name in STRIPE_ENV}, **env}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "CeleryWorker":
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork",
                 "--concurrency", str(self.concurrency), "--without-gossip", "--without-mingle",
                 "--without-heartbeat", "--loglevel", "INFO", "--hostname", f"fault-{os.getpid()}@%h"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        assert wait_until(lambda: b"ready." in self.log.read_bytes() or self.process.poll() is not None,
                          timeout=60), "the worker did not start"
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)



def draft(customer, period: str, total: str = "49.00") -> Invoice:
    invoice = Invoice.objects.create(customer=customer, period=period, status=Invoice.Status.DRAFT,
                                     subtotal=Decimal(total), total=Decimal(total), plan=customer.plan)
    InvoiceLine.objects.create(invoice=invoice, kind=InvoiceLine.Kind.BASE, description="Starter", quantity=1,
                               unit_price=Decimal(total), amount=Decimal(total))
    return invoice


def intents_by_invoice() -> Counter:
    return Counter(pi["metadata"].get("tollbooth_invoice_id") for pi in stripe_list("payment_intents"))


def test_a_worker_child_killed_mid_email_leaves_every_invoice_charged_and_emailed_once(
    stripe_server, broker_sends, tmp_path
):
    count, hang_after = 12, 4
    starter = seeded_plan("starter")
    period = period_previous(period_of(timezone.now()))
    customers = [CustomerFactory(plan=starter, created_at=timezone.now() - timedelta(days=70)) for _ in range(count)]
    for customer in customers:
        card_on_file(customer)
        draft(customer, period)
    mailbox, flag = tmp_path / "mail", tmp_path / "hang"
    mailbox.mkdir()
    flag.write_text("")
    env = {"FAULT_MAIL_DIR": str(mailbox), "FAULT_HANG_FLAG": str(flag), "FAULT_HANG_AFTER": str(hang_after)}

    with CeleryWorker(log=tmp_path / "worker.log", env=env) as worker:
        issued = invoices_issue_batch(period=period, limit=100)  # one dispatch task for the batch
        hanging = Path(f"{flag}.hanging")
        assert wait_until(hanging.exists, timeout=60), (tmp_path / "worker.log").read_text()[-3000:]
        emailed_before_kill = TaskReceipt.objects.filter(key__startswith="invoice-issued-email:").count()
        os.kill(int(hanging.read_text()), signal.SIGKILL)  # the child, inside the 5th invoice's email task
        flag.unlink()

        numbers = {invoice.number for invoice in issued}

        def all_done() -> bool:
            paid = Invoice.objects.filter(period=period, status=Invoice.Status.PAID).count()
            return paid == count and len(mailbox_subjects(mailbox)) >= count

        assert wait_until(all_done, timeout=120), (tmp_path / "worker.log").read_text()[-3000:]
        time.sleep(2)  # a duplicate still on its way would land now
        log = (tmp_path / "worker.log").read_text()

    assert emailed_before_kill == hang_after and len(issued) == count
    assert "SIGKILL" in log  # the pool saw its child die, and gave the email task back
    subjects = mailbox_subjects(mailbox)
    sent = Counter(subject.split()[2] for subject in subjects if subject.startswith("Tollbooth invoice"))
    assert sent == Counter({number: 1 for number in numbers})
    intents = intents_by_invoice()
    for invoice in Invoice.objects.filter(period=period):
        assert (invoice.status, invoice.paid_by) == (Invoice.Status.PAID, "Visa ••4242")
        assert list(invoice.attempts.values_list("number", "status")) == [(1, PaymentAttempt.Status.SUCCEEDED)]
        assert intents[str(invoice.pk)] == 1
    assert TaskReceipt.objects.filter(key__in=[f"invoice-issued:{i.pk}" for i in issued]).count() == count


def _opened(customer, *, issued_ago: timedelta = timedelta(0)) -> Invoice:
    invoice = draft(customer, period_previous(period_of(timezone.now())))
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.OPEN, number=f"TB-TEST-{invoice.pk:06d}",
                                                 issued_at=timezone.now() - issued_ago)
    invoice.refresh_from_db()
    return invoice


def _race(work, runs: int = 2) -> list:
    barrier, results, errors = threading.Barrier(runs), [], []

    def run() -> None:
        try:
            barrier.wait()
            results.append(work())
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    return results


def test_two_dunning_runs_at_once_charge_each_due_invoice_once_and_attempt_every_issued_invoice(stripe_server):
    starter = seeded_plan("starter")

    def customer(card: str | None):
        made = CustomerFactory(plan=starter, created_at=timezone.now() - timedelta(days=70))
        if card:
            card_on_file(made, card)
        return made

    declined = [_opened(customer(DECLINED_CHARGE_CARD)) for _ in range(3)]
    cardless = [_opened(customer(None)) for _ in range(2)]
    not_yet = _opened(customer(DECLINED_CHARGE_CARD))
    for invoice in (*declined, *cardless, not_yet):
        assert invoice_charge.delay(invoice_id=invoice.pk).get() == "failed"
    first_failure = {i.pk: i.attempts.get().finished_at for i in (*declined, *cardless)}
    # Their retry day has come; not_yet's is still tomorrow.
    Invoice.objects.filter(pk__in=first_failure).update(next_charge_at=timezone.now() - timedelta(minutes=1))
    lost = [_opened(customer("4242424242424242"), issued_ago=timedelta(minutes=20)) for _ in range(3)]
    just_issued = _opened(customer("4242424242424242"), issued_ago=timedelta(minutes=1))
    mail.outbox.clear()

    results = _race(invoices_dunning_run)  # a second beat runs the same hourly task at the same moment

    due = [*declined, *cardless, *lost]
    assert sum(results) == len(due)
    intents = intents_by_invoice()
    for invoice in (*declined, *cardless):
        invoice.refresh_from_db()
        assert list(invoice.attempts.values_list("number", "status")) == [
            (1, PaymentAttempt.Status.FAILED), (2, PaymentAttempt.Status.FAILED)]
        # The day-3 retry is scheduled, not skipped by a second charge at once.
        assert invoice.next_charge_at == first_failure[invoice.pk] + timedelta(days=3)
    for invoice in declined:
        assert intents[str(invoice.pk)] == 2
    for invoice in lost:
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAID and intents[str(invoice.pk)] == 1
        assert list(invoice.attempts.values_list("number", "status")) == [(1, PaymentAttempt.Status.SUCCEEDED)]
    assert not just_issued.attempts.exists() and not_yet.attempts.count() == 1
    failed_emails = Counter(m.subject.split()[-1] for m in mail.outbox if m.subject.startswith("Payment failed"))
    assert failed_emails == Counter({i.number: 1 for i in (*declined, *cardless)})  # one per failed attempt
    assert invoices_dunning_run() == 0  # an hour later nothing is due again before day 3


@pytest.fixture
def own_redis(settings, tmp_path):
    """A redis-server of our own (append-only file) as this process's Redis, so it can be killed."""
    with RedisServer(tmp_path, appendonly=True) as server:
        caches = copy.deepcopy(settings.CACHES)
        caches["default"]["LOCATION"] = f"redis://127.0.0.1:{server.port}/{settings.TEST_REDIS_DB}"
        settings.CACHES = caches
        yield server


def test_no_period_is_closed_while_redis_holds_usage_it_cannot_hand_over(own_redis, time_machine):
    customer = CustomerFactory(plan=seeded_plan("starter"), created_at=timezone.now() - timedelta(days=70))
    raw = api_key_issue(customer=customer, name="prod").raw
    client = APIClient()
    for _ in range(5):
        assert client.get("/v1/geocode?q=Paris", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    meter_commits_send()  # the answered calls join Redis's pending counts at once, not in 0.5 s
    assert not UsageRecord.objects.exists()  # counted in Redis, not flushed yet
    time.sleep(0.2)  # the append-only file has them
    own_redis.crash()
    period = period_of(timezone.now())
    time_machine.move_to(day_start(period_bounds(period)[1]) + timedelta(minutes=30))  # 00:30 on the 1st

    with pytest.raises(UsageUnflushed, match="Redis is unreachable"):
        month_close(period=period)
    with pytest.raises(CommandError, match="Redis is unreachable"):
        call_command("invoices_generate", "--period", period)
    assert not Invoice.objects.exists()

    own_redis.restart()  # with what its append-only file kept
    with pytest.raises(redis.exceptions.ConnectionError, match="Redis restarted"):
        redis_client().ping()  # this process notices the restart once
    summary = month_close(period=period)

    invoice = Invoice.objects.get(customer=customer, period=period)
    assert (summary["issued"], invoice.calls, invoice.status != Invoice.Status.DRAFT) == (1, 5, True)
