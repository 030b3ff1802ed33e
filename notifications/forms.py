from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError

from plans.models import Plan

from .models import NotificationSettings
from .validation import (
    MAX_SPEND_CAP, MAX_THRESHOLD, MIN_THRESHOLD, URL_MAX_LENGTH, subscribable_event_types, thresholds_validate,
    webhook_url_validate,
)


class NotificationSettingsForm(forms.Form):
    alerts_enabled = forms.BooleanField(label="Email and webhook alerts at these usage thresholds", required=False)
    thresholds = forms.CharField(
        label="Thresholds (% of included calls)", max_length=60, required=False,
        help_text=f"Comma-separated whole percentages from {MIN_THRESHOLD} to {MAX_THRESHOLD}, e.g. 80, 100.",
    )
    spend_cap = forms.DecimalField(
        label="Monthly spend cap (USD)", required=False, min_value=Decimal("0"), max_value=MAX_SPEND_CAP,
        decimal_places=2,
        help_text="Your whole monthly bill, base fee included. Leave empty for no cap.",
        error_messages={"min_value": "Enter an amount of $0 or more.",
                        "max_value": f"The cap can be at most ${MAX_SPEND_CAP:,}.",
                        "max_decimal_places": "Use dollars and cents, at most 2 decimal places.",
                        "invalid": "Enter an amount in dollars, e.g. 250 or 250.00."},
    )
    cap_mode = forms.ChoiceField(
        label="When the cap is reached", choices=NotificationSettings.CapMode.choices, widget=forms.RadioSelect,
        initial=NotificationSettings.CapMode.ALERT,
    )

    def __init__(self, *args, plan: Plan, **kwargs):
        super().__init__(*args, **kwargs)
        # Plans are data: only a plan that bills money can cap the bill.
        if not plan.is_paid:
            del self.fields["spend_cap"], self.fields["cap_mode"]

    def clean_thresholds(self) -> list[int]:
        raw = self.cleaned_data["thresholds"].replace("%", " ")
        parts = [part for part in re.split(r"[\s,;]+", raw) if part]
        if not all(re.fullmatch(r"\d{1,6}", part) for part in parts):
            raise ValidationError(f"Use whole percentages from {MIN_THRESHOLD} to {MAX_THRESHOLD}, separated by commas.")
        try:
            return thresholds_validate([int(part) for part in parts])
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["thresholds"]) from None

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("alerts_enabled") and cleaned.get("thresholds") == []:
            self.add_error("thresholds", "Enter at least one threshold, or turn the alerts off.")
        return cleaned


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(
        label="Endpoint URL", max_length=URL_MAX_LENGTH,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/webhooks/tollbooth", "autocomplete": "off"}),
        help_text="We POST every event here as JSON, signed with the Tollbooth-Signature header.",
    )
    event_types = forms.MultipleChoiceField(
        label="Events to send", required=False, widget=forms.CheckboxSelectMultiple,
        choices=[(value, f"{value}: {label}") for value, label in subscribable_event_types()],
        help_text="Tick none to get every event, including types added later. Test events always go.",
    )

    def clean_url(self) -> str:
        try:
            return webhook_url_validate(self.cleaned_data["url"])
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["url"]) from None
