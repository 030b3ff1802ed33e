"""Billing's Celery tasks: month close, trials, and (below) charging and dunning."""
from __future__ import annotations

from celery import shared_task

from core.redis import REDIS_UNAVAILABLE

MONTH_CLOSE_BATCH = 1000
TRIAL_REMINDER_DAYS = 3


class UsageUnflushed(RuntimeError):
    """Usage still held in Redis could not be flushed: no period is closed without it."""


@shared_task(acks_late=True, autoretry_for=(UsageUnflushed,), retry_backoff=60, retry_backoff_max=900,
             max_retries=24)
def month_close(period: str | None = None) -> dict:
    """Beat, early on the 1st (UTC): flush usage, then draft, issue and charge last month's invoices.

    Every step is safe to repeat: a run that crashed, or two runs at once, leave one invoice per
    customer (unique per customer and period), each issued once with one number. With Redis
    unreachable it drafts and issues nothing and retries (then the 06:30 run tries again).
    """
    from django.utils import timezone

    from core.periods import period_of, period_previous

    period = period or period_previous(period_of(timezone.now()))
    usage_flush_all()
    generated = invoices_generate_all(period=period)
    issued = invoices_issue_all(period=period)
    return {"period": period, **generated, "issued": issued}


def usage_flush_all() -> None:
    """Wait for a flush already running, then flush everything: issued invoices never change later.

    Raises UsageUnflushed if Redis is unreachable (or the flush lock stays taken): a period is
    never closed without the calls Redis still holds, since an issued invoice never changes.
    """
    from core.redis import redis_client
    from metering.services import usage_flush

    try:
        # The lock the minute flush takes: wait for a flush already running rather than race it.
        lock = redis_client().lock("tb:lock:usage-flush", timeout=600, blocking_timeout=600)
        if not lock.acquire():
            raise UsageUnflushed("the usage flush lock stayed taken for 10 minutes")
        try:
            usage_flush()
        finally:
            lock.release()
    except REDIS_UNAVAILABLE as exc:
        raise UsageUnflushed(f"Redis is unreachable ({exc}); the calls it holds are not flushed yet") from exc


def invoices_generate_all(*, period: str, batch: int | None = None) -> dict:
    from accounts.models import Customer

    from core.periods import day_start, period_bounds

    from .invoicing import invoices_generate_batch

    batch = batch or MONTH_CLOSE_BATCH
    _, end = period_bounds(period)
    ids = list(Customer.objects.filter(created_at__lt=day_start(end)).order_by("pk").values_list("pk", flat=True))
    totals = {"created": 0, "regenerated": 0, "skipped": 0}
    for start in range(0, len(ids), batch):
        report = invoices_generate_batch(customer_ids=ids[start:start + batch], period=period)
        for name in totals:
            totals[name] += getattr(report, name)
    return totals


def invoices_issue_all(*, period: str, batch: int | None = None) -> int:
    from .invoicing import invoices_issue_batch

    batch = batch or MONTH_CLOSE_BATCH
    issued = 0
    while True:
        done = invoices_issue_batch(period=period, limit=batch)
        if not done:
            return issued
        issued += len(done)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def invoices_issued_dispatch(invoice_ids: list[int]) -> int:
    """After an issue (one invoice, or a month-close batch): signals, charge, email, once each.

    Here rather than in the issuing transaction's on_commit hooks: the outbox row survives a
    crash right after the commit, and the per-invoice work (signal receivers, email, Stripe)
    stays out of the month close's batches.
    """
    from .models import Invoice
    from .invoicing import invoice_issued_dispatch

    invoices = Invoice.objects.filter(pk__in=invoice_ids).order_by("pk")
    return sum(invoice_issued_dispatch(invoice=invoice) for invoice in invoices)


@shared_task(acks_late=True)
def trials_run() -> dict:
    """Beat, hourly: remind trials ending within TRIAL_REMINDER_DAYS (once), end the expired ones."""
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Customer

    from .models import TrialNotice
    from .subscriptions import trial_end, trial_remind

    now = timezone.now()
    trials = Customer.objects.filter(status=Customer.Status.TRIAL)
    soon = trials.filter(trial_ends_at__gt=now, trial_ends_at__lte=now + timedelta(days=TRIAL_REMINDER_DAYS))
    reminded = sum(trial_remind(customer=c) for c in soon.exclude(trial_notices__kind=TrialNotice.Kind.ENDING))
    ended = [trial_end(customer=c) for c in trials.filter(trial_ends_at__lte=now)]
    return {"reminded": reminded, "ended": len(ended)}


@shared_task(acks_late=True)
def terms_moves_apply() -> int:
    """Beat, hourly: customers whose scheduled move to their plan's current terms has come take them,
    and subscriptions scheduled to end (or leave a paid plan) at the period's end do."""
    from .scheduled_ends import scheduled_ends_due_apply
    from .subscriptions import terms_moves_due_apply

    return terms_moves_due_apply() + scheduled_ends_due_apply()


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def trial_email_task(customer_id: int, kind: str) -> None:
    import outbox

    from .emails import trial_email_send

    outbox.run_once(key=f"trial-{kind}-email:{customer_id}",
                    work=lambda: trial_email_send(customer_id=customer_id, kind=kind))


# --- Charging and dunning (Stripe) -----------------------------------------------------------
# Tasks take ids and import their services inside, so loading this module stays cheap.

from .gateway import StripeUnavailable  # noqa: E402


@shared_task(
    autoretry_for=(StripeUnavailable,), retry_backoff=30, retry_backoff_max=3600,
    retry_jitter=True, max_retries=10,
)
def invoice_charge(invoice_id: int) -> str:
    """Charge an issued invoice; a retry finds the first try's PaymentIntent instead of a new one."""
    from .charging import invoice_charge_run

    return invoice_charge_run(invoice_id=invoice_id).outcome


@shared_task(
    autoretry_for=(StripeUnavailable,), retry_backoff=30, retry_backoff_max=3600,
    retry_jitter=True, max_retries=10,
)
def stripe_customer_ensure_task(customer_id: int) -> str:
    from accounts.models import Customer

    from .charging import stripe_customer_ensure

    return stripe_customer_ensure(customer=Customer.objects.get(pk=customer_id))


@shared_task
def invoices_dunning_run() -> int:
    """Hourly: claim and queue the charges that are due: retry days that have come, issued
    invoices never attempted, attempts a crashed worker left. Two runs at once charge once."""
    from .dunning import invoices_dunning_claim

    return len(invoices_dunning_claim())


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def invoice_issued_email_task(invoice_id: int) -> None:
    """The invoice email, on the email queue: a silent mail server never holds up the charge."""
    import outbox

    from .emails import invoice_issued_email_send

    outbox.run_once(key=f"invoice-issued-email:{invoice_id}",
                    work=lambda: invoice_issued_email_send(invoice_id=invoice_id))


@shared_task
def payment_failed_email_task(attempt_id: int) -> None:
    import outbox

    from .emails import payment_failed_email_send

    # Once per attempt, however often the outbox delivers this task.
    outbox.run_once(key=f"payment-failed-email:{attempt_id}",
                    work=lambda: payment_failed_email_send(attempt_id=attempt_id))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def invoice_email_resend_task(invoice_id: int, request_id: int) -> None:
    """Staff's "resend the invoice email": once per request (the staff action's id), however often
    the outbox delivers it; the first email's own receipt would otherwise swallow it."""
    import outbox

    from .emails import invoice_issued_email_send

    outbox.run_once(key=f"invoice-email-resend:{request_id}",
                    work=lambda: invoice_issued_email_send(invoice_id=invoice_id))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def payment_received_email_task(invoice_id: int) -> None:
    """The receipt with the invoice PDF, on the email queue; once per invoice (it is paid once)."""
    import outbox

    from .emails import payment_received_email_send

    outbox.run_once(key=f"payment-received-email:{invoice_id}",
                    work=lambda: payment_received_email_send(invoice_id=invoice_id))
