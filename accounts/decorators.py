"""The portal's one access rule, shared by every app that serves portal pages."""
from __future__ import annotations

from functools import wraps
from typing import Callable

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .selectors import customer_for_user

CustomerView = Callable[..., HttpResponse]


def customer_required(view: CustomerView) -> CustomerView:
    """Signed in and owning a customer; passes it on. Staff without one get a friendly page."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        customer = customer_for_user(request.user)
        if customer is None:
            return render(request, "dashboard/no_customer.html")
        return view(request, customer, *args, **kwargs)

    return wrapper
