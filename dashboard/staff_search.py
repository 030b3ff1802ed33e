"""Find a customer from what staff have in hand: an email, a company, a Stripe id or a key's last 8."""
from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import Customer

RESULTS_LISTED = 50


def customers_search(*, query: str) -> QuerySet[Customer]:
    """Newest first. Emails and companies match in part; a Stripe id, a key's last 8 characters or a
    customer id match whole (a part of a key would match too many)."""
    query = " ".join((query or "").replace("\x00", "").split())[:200]
    customers = Customer.objects.select_related("owner", "plan").order_by("-created_at", "-pk")
    if not query:
        return customers
    match = Q(owner__email__icontains=query) | Q(company__icontains=query) | Q(stripe_customer_id=query)
    if len(query) >= 8:  # a whole key or its masked form ends with the same 8 characters
        match |= Q(api_keys__last8=query[-8:])
    if query.isdigit() and int(query) < 2**31:
        match |= Q(pk=int(query))
    return customers.filter(match).distinct()
