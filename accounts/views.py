from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.validators import slug_re
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from plans.selectors import plans_public

from .email_change import email_change_confirm, email_change_read, password_changed_notify
from .forms import EmailAuthenticationForm, RateLimitedPasswordResetForm, SignupForm, add_service_errors
from .login_guard import login_attempt_count
from .ratelimit import Attempt, attempt_count, client_ip
from .reveal import reveal_render, reveal_stash
from .selectors import customer_for_user
from .services import customer_signup

SIGNUP_WINDOW_SECONDS = 60 * 60
RESET_WINDOW_SECONDS = 60 * 60


def _attempt(request: HttpRequest, *, scope: str, limit: int, window_seconds: int) -> Attempt:
    return attempt_count(scope=scope, ident=client_ip(request), limit=limit, window_seconds=window_seconds)


def limit_message(attempt: Attempt, what: str) -> str:
    if not attempt.limited:
        return ""
    minutes = attempt.retry_minutes
    source = "for this account" if attempt.per_account else "from your network"
    return f"Too many {what} {source}. Please try again in {minutes} minute{'s' if minutes > 1 else ''}."


def limited_response(response: HttpResponse, attempt: Attempt) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(attempt.retry_after)
    return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _signup_page(request)
    attempt = _attempt(
        request, scope="signup", limit=settings.SIGNUPS_PER_HOUR_PER_IP, window_seconds=SIGNUP_WINDOW_SECONDS
    )
    form = SignupForm(request.POST, rate_limit_message=limit_message(attempt, "sign-ups"))
    if form.is_valid():
        response = _signup_complete(request, form)
        if response is not None:
            return response
    response = render(request, "accounts/signup.html", {"form": form})
    return limited_response(response, attempt) if form.is_rate_limited else response


def _signup_page(request: HttpRequest) -> HttpResponse:
    requested = request.GET.get("plan", "").strip()[:100]
    # Only slug-shaped values reach the database (a NUL byte would make Postgres raise).
    known = bool(slug_re.match(requested)) and plans_public().filter(slug=requested).exists()
    form = SignupForm(initial={"plan": requested} if known else {})
    context = {"form": form, "unknown_plan": requested if requested and not known else ""}
    return render(request, "accounts/signup.html", context)


def _signup_complete(request: HttpRequest, form: SignupForm) -> HttpResponse | None:
    """Create the account, sign in, and stash the key; None (with form errors) if refused."""
    data = form.cleaned_data
    try:
        result = customer_signup(
            email=data["email"], company=data["company"], password=data["password"], plan=data["plan"]
        )
    except ValidationError as exc:
        add_service_errors(form, exc)
        return None
    except IntegrityError:
        # Two signups for one email raced past the check; the unique username stopped one.
        form.add_error("email", "An account with this email already exists. Log in instead?")
        return None
    login(request, result.customer.owner)
    if result.trial_used_before:
        messages.info(request, (
            f"You have had a free trial with us before, so your account starts on the "
            f"{result.customer.plan.name} plan. Add a card on the billing page, then switch to {data['plan'].name}."
        ))
    response = redirect("signup-welcome")
    reveal_stash(request, response, raw=result.issued.raw, name=result.issued.key.name)
    return response


@login_required
def signup_welcome(request: HttpRequest) -> HttpResponse:
    context = {
        "customer": customer_for_user(request.user),
        "geocode_url": request.build_absolute_uri(reverse("geocode")) + "?q=Paris",
    }
    return reveal_render(request, "accounts/welcome.html", context)


class RateLimitedPostMixin:
    """Count every POST per client address; over the limit the form fails with only that."""

    limit_scope = ""
    limit_what = ""
    limit_setting = ""  # the settings name holding the number of POSTs allowed per window
    limit_window_seconds = 0
    attempt = Attempt(limited=False)

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        self.attempt = self.attempt_count(request)
        return super().post(request, *args, **kwargs)

    def attempt_count(self, request: HttpRequest) -> Attempt:
        # Every POST counts, right or wrong: that is what slows down guessing.
        return _attempt(
            request, scope=self.limit_scope, limit=getattr(settings, self.limit_setting),
            window_seconds=self.limit_window_seconds,
        )

    def get_form_kwargs(self) -> dict:
        return {**super().get_form_kwargs(), "rate_limit_message": limit_message(self.attempt, self.limit_what)}

    def form_invalid(self, form) -> HttpResponse:
        response = super().form_invalid(form)
        return limited_response(response, self.attempt) if form.is_rate_limited else response


class LoginView(RateLimitedPostMixin, auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True
    limit_what = "sign-in attempts"

    def attempt_count(self, request: HttpRequest) -> Attempt:
        # Per address and per account, shared with the staff login (login_guard).
        return login_attempt_count(request)

    def get_default_redirect_url(self) -> str:
        # Staff have no customer account: they land on the staff dashboard (README "Staff console").
        if self.request.user.is_staff:
            return reverse("staff-dashboard")
        return super().get_default_redirect_url()


class PasswordResetView(RateLimitedPostMixin, auth_views.PasswordResetView):
    template_name = "accounts/password_reset_form.html"
    form_class = RateLimitedPasswordResetForm
    limit_scope, limit_what = "password-reset", "password reset requests"
    limit_setting, limit_window_seconds = "PASSWORD_RESETS_PER_HOUR_PER_IP", RESET_WINDOW_SECONDS
    subject_template_name = "emails/password_reset_subject.txt"
    email_template_name = "emails/password_reset_body.txt"
    html_email_template_name = "emails/password_reset_body.html"

    @property
    def extra_email_context(self) -> dict:
        # Links use the configured site URL, not the request's Host header: a forged Host
        # must never end up in a reset link (the classic reset-poisoning attack).
        return {"site_url": settings.SITE_URL.rstrip("/")}


class LogoutView(auth_views.LogoutView):
    """Django's logout (a POST), then a word on the next page that it worked."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        was_signed_in = request.user.is_authenticated
        response = super().post(request, *args, **kwargs)
        if was_signed_in:
            messages.info(request, "You are logged out.")
        return response


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's reset confirmation, and a notice to the account's address once the password changed."""

    template_name = "accounts/password_reset_confirm.html"

    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)
        password_changed_notify(user=form.user)
        return response


@require_http_methods(["GET", "POST"])
def email_change_link(request: HttpRequest, token: str) -> HttpResponse:
    """The link sent to a new address. GET only shows what it will do: mail scanners that fetch
    links must not make the change; the button (a POST) does. No sign-in needed: the signed link
    is the proof, and it may well be opened on another device."""
    try:
        change = email_change_confirm(token=token) if request.method == "POST" else email_change_read(token=token)
    except ValidationError as exc:
        context = {"error": exc.messages[0], "code": exc.code}
        return render(request, "accounts/email_change_confirm.html", context, status=400)
    if request.method == "GET":
        return render(request, "accounts/email_change_confirm.html", {"change": change, "token": token})
    messages.success(request, f"Your email is now {change.new}. Use it to log in.")
    signed_in_here = request.user.is_authenticated and request.user.pk == change.user.pk
    return redirect("portal-account" if signed_in_here else "login")
