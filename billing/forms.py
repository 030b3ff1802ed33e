from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import Customer
from plans.models import Plan
from plans.selectors import plans_public

from .models import BillingDetails, CreditEntry
from .subscriptions import plan_change_check


class PlanChangeForm(forms.Form):
    """Pick a public plan other than the current one; `confirm` is set on the second step."""

    plan = forms.ModelChoiceField(
        queryset=Plan.objects.none(), widget=forms.RadioSelect, empty_label=None,
        error_messages={"invalid_choice": "Choose one of the plans listed.", "required": "Choose a plan."},
    )
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, customer: Customer, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.customer = customer
        # Hidden plans are not for sale; an unknown or hidden id is simply not a choice.
        self.fields["plan"].queryset = plans_public()
        self.fields["plan"].label_from_instance = lambda plan: plan.name

    def clean_plan(self) -> Plan:
        plan = self.cleaned_data["plan"]
        if plan.pk == self.customer.plan_id:
            raise forms.ValidationError(f"You are already on the {plan.name} plan.", code="current_plan")
        return plan


class CustomerAdminForm(forms.ModelForm):
    """The Customer admin's form: a new plan is checked as plan_change(by_staff=True) checks it,
    so a refused move is a form error; the admin then saves it through that service."""

    class Meta:
        model = Customer
        fields = "__all__"

    def clean_plan(self) -> Plan:
        plan = self.cleaned_data["plan"]
        if self.instance.pk is not None and plan.pk != self.instance.plan_id:
            try:
                plan_change_check(customer=self.instance, plan=plan, by_staff=True)
            except ValidationError as error:
                fields = error.message_dict if hasattr(error, "error_dict") else {}
                raise forms.ValidationError(fields.get("plan", error.messages)) from error
        return plan


class CreditEntryForm(forms.ModelForm):
    """Staff's "add credit": the service's own rules, shown as form errors."""

    class Meta:
        model = CreditEntry
        fields = ("customer", "amount", "reason")
        help_texts = {"amount": "Dollars and cents, e.g. 12.50. Used by the next invoices; what is left carries forward.",
                      "reason": "Shown to the customer with the credit."}

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount is None or amount <= 0:
            raise forms.ValidationError("A credit is a positive amount in cents, e.g. 12.50.")
        return amount

    def clean_reason(self):
        reason = (self.cleaned_data.get("reason") or "").strip()
        if not reason:
            raise forms.ValidationError("Say what the credit is for.")
        return reason


class BillingDetailsForm(forms.ModelForm):
    """What the customer's invoices are billed to; every field optional (the company name stands in)."""

    class Meta:
        model = BillingDetails
        fields = ("name", "address", "country", "tax_id")
        widgets = {"address": forms.Textarea(attrs={"rows": 3, "autocomplete": "street-address"}),
                   "name": forms.TextInput(attrs={"autocomplete": "organization"}),
                   "country": forms.TextInput(attrs={"autocomplete": "country-name"})}

    def clean(self):
        cleaned = super().clean()
        # A line break in a one-line field would print as a stray line on the invoice.
        for name in ("name", "country", "tax_id"):
            if name in cleaned:
                cleaned[name] = " ".join(cleaned[name].split())
        return cleaned
