"""Reads of customers, their teams and their API keys."""
from __future__ import annotations

import math
from datetime import datetime, timezone as dt_timezone

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Case, F, QuerySet, Value, When
from django.utils import timezone

from .models import ApiKey, Customer, Invitation, Membership

BIGINT_MAX = 2**63 - 1


def membership_for_user(user: AbstractBaseUser | AnonymousUser) -> Membership | None:
    """The user's seat on a customer account, read fresh (a removal holds on the next request);
    None when anonymous or on no team (staff, or a removed member)."""
    if not user.is_authenticated:
        return None
    membership = Membership.objects.select_related("customer__plan").filter(user=user).first()
    if membership is not None:
        return membership
    # A customer's primary contact is always an owner (README "Teams"). Rows inserted without
    # Customer.save (bulk loads) have no membership row: the contact is still its owner.
    customer = Customer.objects.select_related("plan").filter(owner=user).first()
    return Membership(customer=customer, user=user, role=Membership.Role.OWNER) if customer else None


def customer_for_user(user: AbstractBaseUser | AnonymousUser) -> Customer | None:
    """The customer this user is a member of, or None (anonymous, or staff without a customer)."""
    membership = membership_for_user(user)
    return membership.customer if membership else None


def members_of(*, customer: Customer) -> QuerySet[Membership]:
    """The team, owners first, then by when they joined."""
    order = Case(*(When(role=role, then=Value(n)) for n, role in enumerate(Membership.Role.values)))
    return (Membership.objects.filter(customer=customer).select_related("user")
            .order_by(order, "created_at", "pk"))


def invitations_open(*, customer: Customer, now: datetime | None = None) -> QuerySet[Invitation]:
    return Invitation.objects.filter(customer=customer, accepted_at__isnull=True, revoked_at__isnull=True,
                                     expires_at__gt=now or timezone.now()).order_by("created_at", "pk")


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


def trial_days_left(customer: Customer, *, now: datetime | None = None) -> int | None:
    """Days of the trial left, counted as a person counts them; None outside a trial.

    Whole days of 24 hours, rounded up: a trial that ends in 13 days 23 hours has 14 left, one
    that ends in 5 hours, tomorrow, has 1. On the day it ends (UTC) it has 0, which pages print
    as "ends today" (accounts/templatetags/trial.py); a trial past its end, until the hourly
    trials run moves the customer on, has 0 too. A trial lasts its days left at its start:
    `trial_days_left(customer, now=customer.trial_window()[0])` is 14 for a 14-day trial.
    """
    ends_at = customer.trial_ends_at
    if customer.status != Customer.Status.TRIAL or ends_at is None:
        return None
    now = now or timezone.now()
    if ends_at.astimezone(dt_timezone.utc).date() <= now.astimezone(dt_timezone.utc).date():
        return 0
    return math.ceil((ends_at - now).total_seconds() / 86400)
