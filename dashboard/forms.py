from __future__ import annotations

from django import forms

from accounts.models import ApiKey
from accounts.services import MAX_GRACE_DAYS


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=ApiKey._meta.get_field("name").max_length,
        widget=forms.TextInput(attrs={"placeholder": "e.g. Production server", "autocomplete": "off"}),
        error_messages={"required": "Give the key a name."},
    )
    mode = forms.ChoiceField(
        choices=[("live", "Live: billed calls"), ("test", "Test mode: free, 10 calls a minute, 1,000 a day")],
        initial="live", widget=forms.RadioSelect, label="Mode", required=False,  # absent: live, as before
    )


def _grace_label(days: int) -> str:
    if days == 0:
        return "End the old key now"
    return f"Keep the old key for {days} day{'s' if days > 1 else ''}"


class ApiKeyRotateForm(forms.Form):
    grace_days = forms.TypedChoiceField(
        label="Grace period",
        coerce=int,
        choices=[(days, _grace_label(days)) for days in range(MAX_GRACE_DAYS + 1)],
        initial=1,
        help_text="How long the old key keeps working, so you can deploy the new one first.",
        error_messages={"invalid_choice": f"Choose a grace period from 0 to {MAX_GRACE_DAYS} days."},
    )
