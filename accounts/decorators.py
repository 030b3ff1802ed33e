"""The portal's one access rule, shared by every app that serves portal pages."""
from __future__ import annotations

from functools import wraps
from typing import Callable

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import Membership
from .roles import CAPABILITY_NAMES, CAPABILITIES, role_can, roles_with
from .selectors import membership_for_user

CustomerView = Callable[..., HttpResponse]

# A view decorated without naming a capability is for owners only: a page nobody classified
# must not open to every role (the role-matrix test refuses it anyway).
UNCLASSIFIED = "team_manage"

_UNREAD = object()


def membership_for_request(request: HttpRequest) -> Membership | None:
    """The signed-in user's membership, read once per request (the view and the header share it)."""
    membership = getattr(request, "_portal_membership", _UNREAD)
    if membership is _UNREAD:
        membership = membership_for_user(request.user)
        request._portal_membership = membership
    return membership


def customer_required(capability: str | CustomerView) -> Callable[[CustomerView], CustomerView] | CustomerView:
    """`@customer_required("billing")`: signed in, on a customer's team, in a role that has the
    capability (accounts.roles); passes the customer on. Someone on no team gets a friendly page;
    a member whose role lacks it gets 403, for a GET and a POST alike, naming the roles that have it."""
    if callable(capability):
        return customer_required(UNCLASSIFIED)(capability)
    if capability not in CAPABILITIES:
        raise ValueError(f"Unknown portal capability {capability!r}; see accounts.roles.CAPABILITIES")

    def decorate(view: CustomerView) -> CustomerView:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            membership = membership_for_request(request)
            if membership is None:
                return render(request, "accounts/no_membership.html")
            if not role_can(membership.role, capability):
                return role_refused(request, membership, capability)
            return view(request, membership.customer, *args, **kwargs)

        checked = login_required(wrapper)
        checked.portal_capability = capability  # read by the role-matrix test
        return checked

    return decorate


def role_refused(request: HttpRequest, membership: Membership, capability: str) -> HttpResponse:
    context = {"membership": membership, "what": CAPABILITY_NAMES[capability],
               "roles": roles_with(capability), "capability": capability}
    return render(request, "accounts/role_required.html", context, status=403)
