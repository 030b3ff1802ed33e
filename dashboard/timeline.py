"""A customer's story for staff, newest first: signup, plan moves, invoices and payments, credits
and what staff did, each read from the record that holds it (nothing is stored twice).

The alerts that fired belong to `notifications`, a sibling app this one never imports: the staff
page merges them in (`timeline_merge`, through the `staff_timeline` template filter) from
notifications' own template tag."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from accounts.models import Customer
from billing.models import CreditEntry, Invoice, PaymentAttempt, PlanChange

from .models import StaffAction

TIMELINE_LENGTH = 100


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str  # a CSS-friendly word: signup, plan, invoice, payment, credit, staff (alert: notifications)
    text: str
    by: str = ""
    note: str = ""


def _plan_events(customer: Customer) -> list[Event]:
    changes = PlanChange.objects.filter(customer=customer).select_related("from_plan", "to_plan")
    return [Event(c.at, "plan", f"{c.get_reason_display()}: {c.from_plan.name} → {c.to_plan.name}"
                  if c.from_plan_id != c.to_plan_id else f"{c.get_reason_display()} ({c.to_plan.name})")
            for c in changes]


def _invoice_events(customer: Customer) -> list[Event]:
    events = []
    for inv in Invoice.objects.filter(customer=customer).exclude(status=Invoice.Status.DRAFT):
        if inv.issued_at:
            events.append(Event(inv.issued_at, "invoice", f"Invoice {inv.number} issued for {inv.period}: ${inv.total:,.2f}"))
        if inv.paid_at:
            how = f" by {inv.paid_by}" if inv.paid_by else ""
            events.append(Event(inv.paid_at, "invoice", f"Invoice {inv.number} paid{how}"))
        if inv.voided_at:
            events.append(Event(inv.voided_at, "invoice", f"Invoice {inv.number} voided"))
    return events


def _payment_events(customer: Customer) -> list[Event]:
    attempts = PaymentAttempt.objects.filter(invoice__customer=customer).select_related("invoice")
    return [Event(a.finished_at or a.created_at, "payment", f"{a} on {a.invoice.number}"
                  + (f": {a.failure_message}" if a.failure_message else "")) for a in attempts]


def customer_timeline(*, customer: Customer, limit: int = TIMELINE_LENGTH) -> list[Event]:
    events = [Event(customer.created_at, "signup", "Signed up")]
    events += _plan_events(customer) + _invoice_events(customer) + _payment_events(customer)
    events += [Event(e.created_at, "credit", f"Credit ${e.amount:,.2f}: {e.reason}", by=e.created_by)
               for e in CreditEntry.objects.filter(customer=customer)]
    events += [Event(a.created_at, "staff", f"{a.get_kind_display()}: {a.summary}", by=a.staff_name, note=a.note)
               for a in StaffAction.objects.filter(customer=customer)]
    return timeline_merge(events, limit=limit)


class Dated(Protocol):
    """An entry of any app: the page reads at, kind, text, by and note."""

    at: datetime


def timeline_merge(*parts: Iterable[Dated], limit: int = TIMELINE_LENGTH) -> list[Dated]:
    """Several apps' entries as one timeline, newest first, the newest `limit` of them all (a part
    already cut to its own newest `limit` loses nothing the merge keeps)."""
    return sorted((e for part in parts for e in part), key=lambda e: e.at, reverse=True)[:limit]
