"""The `data` of each webhook event: ids, amounts as strings (Decimal, never float), ISO times."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from accounts.models import ApiKey, Customer
from billing.models import Invoice, PaymentAttempt, PlanChange


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def invoice_data(invoice: Invoice) -> dict[str, Any]:
    return {"invoice": {
        "id": invoice.pk, "number": invoice.number, "period": invoice.period, "status": invoice.status,
        "currency": invoice.currency.lower(), "subtotal": str(invoice.subtotal), "total": str(invoice.total),
        "calls": invoice.calls, "issued_at": _iso(invoice.issued_at), "paid_at": _iso(invoice.paid_at),
    }}


def payment_failed_data(invoice: Invoice, attempt: PaymentAttempt | None) -> dict[str, Any]:
    data = invoice_data(invoice)
    if attempt is not None:
        data["attempt"] = {"number": attempt.number, "amount": str(attempt.amount),
                           "failure_code": attempt.failure_code, "failure_message": attempt.failure_message}
    return data


def plan_changed_data(change: PlanChange) -> dict[str, Any]:
    return {"from_plan": change.from_plan.slug, "to_plan": change.to_plan.slug, "at": _iso(change.at), "reason": change.reason}


def trial_ending_data(customer: Customer) -> dict[str, Any]:
    return {"plan": customer.plan.slug, "trial_ends_at": _iso(customer.trial_ends_at)}


def key_rotated_data(key: ApiKey) -> dict[str, Any]:
    """Names and masks only: a raw key is never in an event."""
    data: dict[str, Any] = {"key": {"id": key.pk, "name": key.name, "masked": key.masked, "created_at": _iso(key.created_at)}}
    old = key.rotated_from
    if old is not None:
        data["previous_key"] = {"id": old.pk, "masked": old.masked, "expires_at": _iso(old.revoked_at or old.expires_at)}
    return data
