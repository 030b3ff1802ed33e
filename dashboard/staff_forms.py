"""The staff console's forms: input checks only; the rules are the services' (dashboard.staff_actions)."""
from __future__ import annotations

from decimal import Decimal

from django import forms

from accounts.models import Customer
from billing.manual import MAX_TRIAL_EXTENSION_DAYS, PAYMENT_METHODS
from billing.models import Invoice
from plans.models import Plan

NOTE_HELP = "Why, for the record (shown in the customer's timeline; the customer never sees it)."


def _note(required: bool = False) -> forms.CharField:
    return forms.CharField(label="Note", required=required, max_length=1000, help_text=NOTE_HELP,
                           widget=forms.TextInput, error_messages={"required": "Say what explains it."})


class SearchForm(forms.Form):
    q = forms.CharField(label="Email, company, Stripe id or a key's last 8", max_length=200, required=False)


class PlanForm(forms.Form):
    # Staff may move a customer to a hidden plan (a custom deal), so every plan is a choice.
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), label="New plan",
                                  error_messages={"invalid_choice": "Choose one of the plans listed.",
                                                  "required": "Choose a plan."})
    note = _note()


class TrialForm(forms.Form):
    days = forms.IntegerField(label="Extend by (days)", min_value=1, max_value=MAX_TRIAL_EXTENSION_DAYS,
                              error_messages={"min_value": f"Extend by 1 to {MAX_TRIAL_EXTENSION_DAYS} days.",
                                              "max_value": f"Extend by 1 to {MAX_TRIAL_EXTENSION_DAYS} days.",
                                              "required": "Say by how many days."})
    note = _note()


class CreditForm(forms.Form):
    amount = forms.DecimalField(label="Amount ($)", max_digits=11, decimal_places=2, min_value=Decimal("0.01"),
                                error_messages={"min_value": "A credit is a positive amount, e.g. 12.50.",
                                                "invalid": "A credit is a positive amount, e.g. 12.50.",
                                                "max_decimal_places": "Dollars and cents only, e.g. 12.50.",
                                                "required": "Give the amount."})
    reason = forms.CharField(label="Reason (the customer sees it)", max_length=200,
                             error_messages={"required": "Say what the credit is for."})
    note = _note()


class _InvoiceForm(forms.Form):
    invoice = forms.ModelChoiceField(queryset=Invoice.objects.none(), label="Invoice", error_messages={
        "invalid_choice": "Choose one of this customer's invoices.", "required": "Choose an invoice."})
    note = _note()

    def __init__(self, *args, customer: Customer, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The service refuses the wrong statuses with its own words; here only this customer's issued ones.
        self.fields["invoice"].queryset = Invoice.objects.filter(customer=customer).exclude(status=Invoice.Status.DRAFT)
        self.fields["invoice"].label_from_instance = (
            lambda inv: f"{inv.number} · {inv.get_status_display()} · ${inv.total:,.2f}")


class PaidForm(_InvoiceForm):
    method = forms.ChoiceField(label="Paid by", choices=list(PAYMENT_METHODS.items()),
                               error_messages={"invalid_choice": "Choose how the invoice was paid."})
    reference = forms.CharField(label="Reference", max_length=40,
                                error_messages={"required": "Give the payment's reference (the transfer or cheque number)."})


class InvoiceForm(_InvoiceForm):
    """Void or resend: the invoice and a note."""


class CancelForm(forms.Form):
    confirm = forms.BooleanField(label="Yes, cancel this account now and issue its final invoice",
                                 error_messages={"required": "Tick the box to confirm."})
    note = _note(required=True)


class ResolveForm(forms.Form):
    note = _note(required=True)
