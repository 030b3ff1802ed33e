"""What every page's layout may show a signed-in customer: its account and the trial banner.

Both are lazy, so a page that shows neither makes no query for them.
"""
from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.selectors import customer_for_user

from .selectors import trial_notice


def portal(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    customer = SimpleLazyObject(lambda: customer_for_user(user))

    def notice():
        # SimpleLazyObject cannot wrap None; an empty tuple reads as false in templates too.
        return (trial_notice(customer=customer) if customer else None) or ()

    return {"portal_customer": customer, "trial_banner": SimpleLazyObject(notice)}
