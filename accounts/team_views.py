"""The team page (/portal/team/) and the invitation link (/invite/<token>/); the rules are accounts.team."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .decorators import customer_required, membership_for_request
from .forms import InviteSignupForm, TeamInviteForm, add_service_errors
from .models import Customer, Membership
from .ratelimit import attempt_count, client_ip
from .selectors import invitations_open, members_of
from .team import (INVITE_DAYS, invitation_accept, invitation_read, invitation_revoke, invitation_signup,
                   joining_refusal, member_leave, member_remove, member_role_change, team_invite)
from .views import limit_message, limited_response

SIGNUP_WINDOW_SECONDS = 60 * 60


def _team_page(request: HttpRequest, customer: Customer, *, invite_form: TeamInviteForm | None = None,
               error: str = "", status: int = 200) -> HttpResponse:
    context = {
        "customer": customer,
        "me": membership_for_request(request),
        "members": members_of(customer=customer),
        "invitations": invitations_open(customer=customer),
        "invite_form": invite_form or TeamInviteForm(),
        "role_choices": Membership.Role.choices,
        "team_error": error,
        "invite_days": INVITE_DAYS,
    }
    return render(request, "accounts/team.html", context, status=status)


@require_GET
@customer_required("team")
def team(request: HttpRequest, customer: Customer) -> HttpResponse:
    return _team_page(request, customer)


@require_POST
@customer_required("team_manage")
def team_invite_send(request: HttpRequest, customer: Customer) -> HttpResponse:
    form = TeamInviteForm(request.POST)
    if form.is_valid():
        try:
            invitation = team_invite(customer=customer, email=form.cleaned_data["email"],
                                     role=form.cleaned_data["role"], by=request.user)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Invitation sent to {invitation.email} as {invitation.get_role_display()}. "
                                      f"The link works for {INVITE_DAYS} days.")
            return redirect("team")
    return _team_page(request, customer, invite_form=form, status=400)


@require_POST
@customer_required("team_manage")
def team_invite_revoke(request: HttpRequest, customer: Customer, invitation_id: int) -> HttpResponse:
    try:
        invitation = invitation_revoke(customer=customer, invitation_id=invitation_id, by=request.user)
    except ValidationError:
        raise Http404("No such invitation") from None
    messages.success(request, f"The invitation to {invitation.email} is withdrawn; its link no longer works.")
    return redirect("team")


@require_POST
@customer_required("team_manage")
def team_member_role(request: HttpRequest, customer: Customer, member_id: int) -> HttpResponse:
    try:  # the service checks the role after the member, so another account's member is a 404 either way
        membership = member_role_change(customer=customer, member_id=member_id, role=request.POST.get("role", ""),
                                        by=request.user)
    except ValidationError as exc:
        return _refused(request, customer, exc)
    messages.success(request, f"{membership.user.email} is now {membership.get_role_display()}.")
    return redirect("team")


@require_POST
@customer_required("team_manage")
def team_member_remove(request: HttpRequest, customer: Customer, member_id: int) -> HttpResponse:
    try:
        membership = member_remove(customer=customer, member_id=member_id, by=request.user)
    except ValidationError as exc:
        return _refused(request, customer, exc)
    if membership.user_id == request.user.pk:
        messages.success(request, f"You removed yourself from {customer.company}.")
        return redirect("portal")
    messages.success(request, f"{membership.user.email} is removed from the team, from their next page on.")
    return redirect("team")


@require_POST
@customer_required("team")
def team_leave(request: HttpRequest, customer: Customer) -> HttpResponse:
    try:
        member_leave(customer=customer, user=request.user)
    except ValidationError as exc:
        return _refused(request, customer, exc)
    messages.success(request, f"You left {customer.company}.")
    return redirect("portal")


def _refused(request: HttpRequest, customer: Customer, exc: ValidationError) -> HttpResponse:
    if getattr(exc, "code", None) == "unknown_member":
        raise Http404("No such member")
    return _team_page(request, customer, error=exc.messages[0], status=400)


# --- the link in the invitation email ---

def _invite_error(request: HttpRequest, exc: ValidationError, *, status: int, invitation=None) -> HttpResponse:
    context = {"error": exc.messages[0], "code": exc.code, "invitation": invitation}
    return render(request, "accounts/invite.html", context, status=status)


@require_http_methods(["GET", "POST"])
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what the link offers and changes nothing (mail scanners fetch links); a POST joins:
    signed in as the invited address, or by choosing a password for a new login."""
    try:
        invitation = invitation_read(token=token)
    except ValidationError as exc:
        return _invite_error(request, exc, status=400)
    if request.user.is_authenticated:
        refusal = joining_refusal(invitation=invitation, user=request.user)
        if refusal is not None:
            return _invite_error(request, refusal, status=403, invitation=invitation)
        if request.method == "GET":
            return render(request, "accounts/invite.html", {"invitation": invitation})
        try:
            invitation_accept(token=token, user=request.user)
        except ValidationError as exc:
            return _invite_error(request, exc, status=400, invitation=invitation)
        return _joined(request, invitation)
    return _invite_signup(request, invitation, token)


def _invite_signup(request: HttpRequest, invitation, token: str) -> HttpResponse:
    form, status = InviteSignupForm(), 200
    if request.method == "POST":
        attempt = attempt_count(scope="signup", ident=client_ip(request), limit=settings.SIGNUPS_PER_HOUR_PER_IP,
                                window_seconds=SIGNUP_WINDOW_SECONDS)
        form = InviteSignupForm(request.POST, rate_limit_message=limit_message(attempt, "sign-ups"))
        if form.is_valid():
            try:
                joined = invitation_signup(token=token, password=form.cleaned_data["password"])
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                login(request, joined.user)
                return _joined(request, invitation)
        status = 400
    login_url = f"{reverse('login')}?next={reverse('team-invite-accept', args=[token])}"
    response = render(request, "accounts/invite.html", {"invitation": invitation, "form": form, "login_url": login_url},
                      status=status)
    return limited_response(response, attempt) if form.is_rate_limited else response


def _joined(request: HttpRequest, invitation) -> HttpResponse:
    messages.success(request, f"Welcome to {invitation.customer.company}: you joined as "
                              f"{invitation.get_role_display()}.")
    return redirect("portal")
