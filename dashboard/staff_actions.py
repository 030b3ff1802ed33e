"""The staff console's actions on a customer (README "Staff console").

Each goes through the service that owns the change and writes a StaffAction (who, when, what, why)
in the same transaction, so the timeline never shows an action that did not happen, nor misses one.
A refused action raises the service's ValidationError and writes nothing.
"""
from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import outbox
from accounts.models import Customer
from billing import tasks as billing_tasks
from billing.invoicing import invoice_credit_add
from billing.manual import invoice_pay_manual, invoice_void_open, trial_extend
from billing.models import Invoice
from billing.subscriptions import customer_cancel, plan_change
from plans.models import Plan

from .models import ReconciliationIssue, StaffAction

Kind = StaffAction.Kind


def _record(*, staff: AbstractBaseUser, customer: Customer, kind: str, summary: str, note: str = "",
            invoice: Invoice | None = None) -> StaffAction:
    return StaffAction.objects.create(
        customer=customer, staff=staff, staff_name=staff.get_username()[:150], kind=kind, summary=summary[:300],
        note=(note or "").strip(), invoice=invoice,
    )


def _own_invoice(customer: Customer, invoice: Invoice) -> None:
    if invoice.customer_id != customer.pk:
        raise ValidationError({"invoice": "This invoice belongs to another customer."})


@transaction.atomic
def staff_plan_change(*, staff: AbstractBaseUser, customer: Customer, plan: Plan, note: str = "") -> StaffAction:
    before = customer.plan.name
    plan_change(customer=customer, plan=plan, by_staff=True)
    return _record(staff=staff, customer=customer, kind=Kind.PLAN_CHANGE, summary=f"{before} → {plan.name}", note=note)


@transaction.atomic
def staff_trial_extend(*, staff: AbstractBaseUser, customer: Customer, days: int, note: str = "") -> StaffAction:
    extended = trial_extend(customer=customer, days=days)
    summary = f"{days} day{'s' if days != 1 else ''}, now ends {extended.trial_ends_at:%-d %b %Y}"
    return _record(staff=staff, customer=customer, kind=Kind.TRIAL_EXTEND, summary=summary, note=note)


@transaction.atomic
def staff_credit_add(*, staff: AbstractBaseUser, customer: Customer, amount: Decimal, reason: str,
                     note: str = "") -> StaffAction:
    entry = invoice_credit_add(customer=customer, amount=amount, description=reason, by=staff.get_username())
    return _record(staff=staff, customer=customer, kind=Kind.CREDIT_ADD, summary=f"${entry.amount:,.2f}: {entry.reason}",
                   note=note)


@transaction.atomic
def staff_invoice_paid(*, staff: AbstractBaseUser, customer: Customer, invoice: Invoice, method: str, reference: str,
                       note: str = "") -> StaffAction:
    _own_invoice(customer, invoice)
    paid = invoice_pay_manual(invoice=invoice, method=method, reference=reference)
    summary = f"{paid.number} (${paid.total:,.2f}) by {paid.paid_by}"
    return _record(staff=staff, customer=customer, kind=Kind.INVOICE_PAID, summary=summary, note=note, invoice=paid)


@transaction.atomic
def staff_invoice_void(*, staff: AbstractBaseUser, customer: Customer, invoice: Invoice, note: str = "") -> StaffAction:
    _own_invoice(customer, invoice)
    voided = invoice_void_open(invoice=invoice)
    return _record(staff=staff, customer=customer, kind=Kind.INVOICE_VOID, summary=f"{voided.number} (${voided.total:,.2f})",
                   note=note, invoice=voided)


@transaction.atomic
def staff_invoice_resend(*, staff: AbstractBaseUser, customer: Customer, invoice: Invoice, note: str = "") -> StaffAction:
    _own_invoice(customer, invoice)
    if invoice.status == Invoice.Status.DRAFT:
        raise ValidationError({"invoice": "A draft has not been sent; it is emailed when it is issued."})
    action = _record(staff=staff, customer=customer, kind=Kind.INVOICE_RESEND, summary=f"{invoice.number} to {customer.email}",
                     note=note, invoice=invoice)
    # The action's id makes this email its own: the task sends it once however often it is delivered.
    outbox.enqueue(billing_tasks.invoice_email_resend_task, invoice_id=invoice.pk, request_id=action.pk)
    return action


def staff_cancel(*, staff: AbstractBaseUser, customer: Customer, note: str = "") -> StaffAction:
    """customer_cancel flushes Redis usage before its own transaction, so it runs first, on its own;
    the record follows at once (a crash between the two leaves the PlanChange "cancelled" as its trace)."""
    if customer.status == Customer.Status.CANCELLED:
        raise ValidationError({"note": "This account is cancelled already."})
    final = customer_cancel(customer=customer)
    if final is None:
        raise ValidationError({"note": "This account is cancelled already."})
    summary = f"final invoice {final.number} (${final.total:,.2f})"
    return _record(staff=staff, customer=customer, kind=Kind.CANCEL, summary=summary, note=note, invoice=final)


@transaction.atomic
def issue_resolve(*, staff: AbstractBaseUser, issue: ReconciliationIssue, note: str) -> ReconciliationIssue:
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": "Say what explains the difference."})
    locked = ReconciliationIssue.objects.select_for_update().select_related("customer").get(pk=issue.pk)
    if locked.resolved_at is not None:
        raise ValidationError({"note": f"Resolved already by {locked.resolved_by}."})
    locked.resolved_at, locked.resolved_by, locked.resolution_note = timezone.now(), staff.get_username()[:150], note
    locked.save(update_fields=["resolved_at", "resolved_by", "resolution_note"])
    _record(staff=staff, customer=locked.customer, kind=Kind.ISSUE_RESOLVE,
            summary=f"{locked.period} {locked.get_source_display()}", note=note, invoice=None)
    return locked

