"""What metering announces to the apps above it (layers point down, README "Architecture": they listen, we never import them)."""
from __future__ import annotations

from django.dispatch import Signal

# An accepted call brought the customer's month count to (or past) one of its alert thresholds.
# Sent from the hot path after the meter script answered, with no SQL; receivers must be quick
# (dedup and hand the work to Celery). Arguments: customer_id, period ("YYYY-MM"),
# threshold_calls, month_calls.
usage_threshold_crossed = Signal()
