from __future__ import annotations

from django import forms

from accounts.models import Customer
from plans.models import Plan
from plans.selectors import plans_public


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
