"""The customer's account page: email (confirmed by a link to the new address), password, and closing the account.

Closing cancels through billing, so these views sit in the portal layer, above billing.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout, update_session_auth_hash
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.decorators import customer_required
from accounts.email_change import LINK_HOURS, email_change_request, password_changed_notify
from accounts.forms import AccountDeleteForm, EmailChangeForm, GuardedPasswordChangeForm, add_service_errors
from accounts.models import Customer

from .services import account_close


def _account_page(request: HttpRequest, customer: Customer, *, email_form=None, password_form=None,
                  status: int = 200) -> HttpResponse:
    context = {
        "customer": customer,
        "link_hours": LINK_HOURS,
        "email_form": email_form or EmailChangeForm(user=request.user, prefix="email"),
        "password_form": password_form or GuardedPasswordChangeForm(request.user, prefix="password"),
    }
    return render(request, "dashboard/account.html", context, status=status)


@require_http_methods(["GET"])
@customer_required("account")
def account(request: HttpRequest, customer: Customer) -> HttpResponse:
    return _account_page(request, customer)


@require_http_methods(["POST"])
@customer_required("account")
def account_email(request: HttpRequest, customer: Customer) -> HttpResponse:
    form = EmailChangeForm(request.POST, user=request.user, prefix="email")
    if form.is_valid():
        try:
            email = email_change_request(user=request.user, email=form.cleaned_data["email"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, (
                f"We sent a link to {email}: follow it within {LINK_HOURS} hours to make the change. "
                f"Until then you log in with {request.user.email}."
            ))
            return redirect("portal-account")
    return _account_page(request, customer, email_form=form, status=400)


@require_http_methods(["POST"])
@customer_required("account")
def account_password(request: HttpRequest, customer: Customer) -> HttpResponse:
    form = GuardedPasswordChangeForm(request.user, request.POST, prefix="password")
    if form.is_valid():
        user = form.save()
        # Other sessions end; this one stays signed in.
        update_session_auth_hash(request, user)
        password_changed_notify(user=user)
        messages.success(request, "Your password is changed.")
        return redirect("portal-account")
    return _account_page(request, customer, password_form=form, status=400)


@require_http_methods(["GET", "POST"])
@customer_required("account_close")
def account_delete(request: HttpRequest, customer: Customer) -> HttpResponse:
    form = AccountDeleteForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            closed = account_close(customer=customer)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            logout(request)
            final = f" Your final invoice ({closed.final_invoice.number}) is on its way." if closed.final_invoice else ""
            messages.success(request, f"Your account is closed and you are logged out.{final}")
            return redirect(settings.LOGOUT_REDIRECT_URL)
    return render(request, "dashboard/account_delete.html", {"customer": customer, "form": form})
