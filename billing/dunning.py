"""Dunning: the hourly run that claims every charge that is due and queues it (README "Billing").

A failed attempt sets its invoice's next retry day (billing.charging.dunning_next_charge_at);
this run charges those days when they come, and also the invoices whose charge task was lost.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

import outbox

from . import tasks
from .charging import CHARGEABLE, attempt_take
from .models import Invoice, PaymentAttempt

# A pending attempt older than this was abandoned by a crashed worker; dunning picks it up.
STALE_ATTEMPT = timedelta(minutes=30)
# An issued invoice with no attempt this long after its issue lost its charge task: dunning
# charges it. Long enough for the dispatch that follows an issue to have queued the charge.
UNATTEMPTED_AFTER = timedelta(minutes=10)
# Invoices one dunning run claims; the next hourly run takes the rest.
DUNNING_BATCH = 500


def invoices_dunning_claim(*, now: datetime | None = None) -> list[int]:
    """Hourly: claim every charge that is due and queue it, in one transaction.

    Due: an open invoice whose retry day has come, and an issued one that was never attempted
    (its charge task was lost). Each is locked with SKIP LOCKED and given its attempt in the same
    transaction (which clears its retry day), so a second run at the same time skips it, and a
    run after this one finds nothing due: each invoice is charged once. An attempt a crashed
    worker left pending is queued again; its row lock and the Stripe look-up keep it single.
    Returns the ids of the invoices queued or attempted.
    """
    now = now or timezone.now()
    never_attempted = ~Exists(PaymentAttempt.objects.filter(invoice=OuterRef("pk")))
    with transaction.atomic():
        due = (
            Invoice.objects.select_for_update(of=("self",), skip_locked=True).select_related("customer")
            .filter(status=Invoice.Status.OPEN)
            .filter(Q(next_charge_at__lte=now)
                    | Q(never_attempted, total__gt=0, issued_at__lt=now - UNATTEMPTED_AFTER))
            .order_by("pk")[:DUNNING_BATCH]
        )
        claimed = {invoice.pk: attempt_take(invoice, now=now) for invoice in due}
        claimed = {pk: attempt for pk, attempt in claimed.items() if attempt is not None}
        stale = set(Invoice.objects.filter(
            status__in=CHARGEABLE, attempts__status=PaymentAttempt.Status.PENDING,
            attempts__created_at__lt=now - STALE_ATTEMPT,
        ).values_list("pk", flat=True)) - set(claimed)
        pending = [pk for pk, attempt in claimed.items() if attempt.status == PaymentAttempt.Status.PENDING]
        for invoice_id in sorted([*pending, *stale]):
            outbox.enqueue(tasks.invoice_charge, invoice_id=invoice_id)
    return sorted([*claimed, *stale])
