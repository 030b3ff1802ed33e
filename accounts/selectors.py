"""Reads of customers and their API keys."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import F, QuerySet

from .models import ApiKey, Customer

BIGINT_MAX = 2**63 - 1


def customer_for_user(user: AbstractBaseUser | AnonymousUser) -> Customer | None:
    """The customer this user owns, or None (anonymous, or staff without a customer)."""
    if not user.is_authenticated:
        return None
    return Customer.objects.select_related("plan").filter(owner=user).first()


def api_keys_for_customer(*, customer: Customer) -> QuerySet[ApiKey]:
    """Live keys first, newest first within each group."""
    return ApiKey.objects.filter(customer=customer).order_by(
        F("revoked_at").asc(nulls_first=True), "-created_at", "-pk"
    )


def api_key_for_customer(*, customer: Customer, key_id: int) -> ApiKey | None:
    """The key only if this customer owns it: another customer's id looks like no key at all."""
    if not 0 < key_id <= BIGINT_MAX:
        return None  # a URL can hold any digits; Postgres would raise on an out-of-range id
    return ApiKey.objects.select_related("customer__plan").filter(pk=key_id, customer=customer).first()
