"""The admin site, with its login under the same attempt limits as the customer login."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse

from .forms import RateLimitedFormMixin
from .login_guard import login_attempt_count
from .views import limit_message, limited_response


class StaffAuthenticationForm(RateLimitedFormMixin, AdminAuthenticationForm):
    def __init__(self, request: HttpRequest | None = None, *args, **kwargs):
        # AdminSite.login builds the form itself: the verdict travels on the request.
        attempt = getattr(request, "login_attempt", None)
        kwargs.setdefault("rate_limit_message", limit_message(attempt, "sign-in attempts") if attempt else "")
        super().__init__(request, *args, **kwargs)


class StaffAdminSite(admin.AdminSite):
    login_form = StaffAuthenticationForm

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if request.method != "POST":
            return super().login(request, extra_context)
        request.login_attempt = attempt = login_attempt_count(request)
        response = super().login(request, extra_context)
        return limited_response(response, attempt) if attempt.limited else response
