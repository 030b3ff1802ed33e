"""What billing announces to the apps above it (notifications, dashboard).

Every signal is sent after the write that caused it has committed (transaction.on_commit), so a
listener never sees a change that is later rolled back.
"""
from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

# customer, change (PlanChange)
plan_changed = Signal()
# invoice
invoice_issued = Signal()
# invoice
invoice_paid = Signal()
# invoice, attempt (PaymentAttempt)
invoice_payment_failed = Signal()
# customer: its trial ends in a few days
trial_ending = Signal()
# customer: its trial has ended (kept its plan with a card, or moved to the default plan)
trial_ended = Signal()


def send_on_commit(signal: Signal, **kwargs) -> None:
    transaction.on_commit(lambda: signal.send(sender=None, **kwargs))
