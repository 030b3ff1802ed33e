from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, PasswordResetForm, UsernameField
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.forms.utils import ErrorDict

from plans.models import Plan
from plans.selectors import plans_public

from .email_change import email_taken
from .login_guard import ACCOUNT_SCOPE, LOGIN_WINDOW_SECONDS, account_ident
from .ratelimit import attempt_count, attempt_peek

User = get_user_model()
# Usernames are the lowercased email, so an email longer than the username column
# would fail in the database instead of in the form.
EMAIL_MAX_LENGTH = User._meta.get_field("username").max_length
COMPANY_MAX_LENGTH = 100


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Attach a service's ValidationError to the form: per field where the form has it."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


class RateLimitedFormMixin:
    """A form that, when told the client is over its attempt limit, fails with only that.

    Skipping the other checks matters: a limited client must learn nothing more, neither
    whether a password is right nor whether an email is taken.
    """

    def __init__(self, *args, rate_limit_message: str = "", **kwargs):
        self.rate_limit_message = rate_limit_message
        super().__init__(*args, **kwargs)

    @property
    def is_rate_limited(self) -> bool:
        return bool(self.rate_limit_message) and self.is_bound

    def full_clean(self) -> None:
        if not self.is_rate_limited:
            super().full_clean()
            return
        self._errors = ErrorDict()
        self.cleaned_data = {}
        self.add_error(None, ValidationError(self.rate_limit_message, code="rate_limited"))


class PlanChoiceField(forms.ModelChoiceField):
    widget = forms.RadioSelect


class SignupForm(RateLimitedFormMixin, forms.Form):
    email = forms.EmailField(
        max_length=EMAIL_MAX_LENGTH, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    company = forms.CharField(
        max_length=COMPANY_MAX_LENGTH, widget=forms.TextInput(attrs={"autocomplete": "organization"}),
        error_messages={"required": "Tell us the name of your company or project."},
    )
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    plan = PlanChoiceField(
        queryset=Plan.objects.none(), to_field_name="slug", empty_label=None,
        error_messages={
            "required": "Choose a plan.",
            "invalid_choice": "That plan is not available. Choose one of the plans below.",
        },
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Evaluated per form, so a plan staff just unpublished is refused at once.
        self.fields["plan"].queryset = plans_public()

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"])
        if User.objects.filter(Q(email__iexact=email) | Q(username=email.lower())).exists():
            raise ValidationError("An account with this email already exists. Log in instead?", code="taken")
        return email

    def clean(self) -> dict:
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            email = cleaned.get("email") or self.data.get("email", "")
            # The would-be user, so the similarity check can compare with the email.
            candidate = User(username=str(email).lower(), email=email)
            try:
                password_validation.validate_password(password, user=candidate)
            except ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class EmailAuthenticationForm(RateLimitedFormMixin, AuthenticationForm):
    username = UsernameField(
        label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account.",
    }

    def clean_username(self) -> str:
        # Usernames are stored as the lowercased email.
        return self.cleaned_data["username"].strip().lower()


class RateLimitedPasswordResetForm(RateLimitedFormMixin, PasswordResetForm):
    pass


def password_confirm(*, user, password: str) -> None:
    """Check a signed-in user's current password. Wrong answers count against the same
    per-account budget as failed sign-ins, so a borrowed session cannot guess it at leisure."""
    ident = account_ident(user.get_username())
    limit = settings.LOGIN_FAILURES_PER_15_MIN_PER_ACCOUNT
    if attempt_peek(scope=ACCOUNT_SCOPE, ident=ident, limit=limit).limited:
        raise ValidationError("Too many wrong passwords for this account. Please try again later.",
                              code="rate_limited")
    if not user.check_password(password):
        attempt_count(scope=ACCOUNT_SCOPE, ident=ident, limit=limit, window_seconds=LOGIN_WINDOW_SECONDS)
        raise ValidationError("That is not your current password.", code="password_incorrect")


class PasswordConfirmedForm(forms.Form):
    """A form that asks for the current password before a change that matters."""

    password = forms.CharField(
        label="Current password", strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args, user, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        password_confirm(user=self.user, password=password)
        return password


class GuardedPasswordChangeForm(PasswordChangeForm):
    """Django's password change, its old-password check counted like a failed sign-in."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # It shares a page with other forms: no focus jump past them on load.
        self.fields["old_password"].widget.attrs.pop("autofocus", None)
        self.fields["old_password"].label = "Current password"

    def clean_old_password(self) -> str:
        password = self.cleaned_data["old_password"]
        password_confirm(user=self.user, password=password)
        return password


class EmailChangeForm(PasswordConfirmedForm):
    email = forms.EmailField(
        label="New email", max_length=EMAIL_MAX_LENGTH,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    field_order = ["email", "password"]

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"])
        if email_taken(email=email, user=self.user):
            raise ValidationError("An account with this email already exists.", code="taken")
        return email


class AccountDeleteForm(PasswordConfirmedForm):
    pass


class TeamInviteForm(forms.Form):
    email = forms.EmailField(max_length=150, widget=forms.EmailInput(attrs={"autocomplete": "off"}),
                             error_messages={"required": "Enter the email to invite.",
                                             "invalid": "Enter a valid email address."})
    role = forms.ChoiceField(choices=(("developer", "Developer"), ("billing", "Billing"), ("owner", "Owner")),
                             initial="developer", error_messages={"invalid_choice": "Choose owner, developer or billing."})


class InviteSignupForm(RateLimitedFormMixin, forms.Form):
    """The invited person's password; the email is the invitation's and cannot be changed."""

    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
