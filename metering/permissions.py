from __future__ import annotations

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.urls import reverse
from rest_framework import exceptions, status
from rest_framework.permissions import BasePermission

from plans.selectors import plan_cheapest_allowing

from .authentication import InvalidApiKey, key_refusal
from .keyconfig import Access, KeyConfig


class ApiKeyRequired(exceptions.NotAuthenticated):
    default_detail = "API key required"
    default_code = "api_key_required"


class AccountCancelled(exceptions.PermissionDenied):
    default_detail = "Account cancelled"
    default_code = "account_cancelled"


class PaymentRequired(exceptions.APIException):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    default_detail = "Payment required"
    default_code = "payment_required"


class NotEntitled(exceptions.PermissionDenied):
    default_detail = "Your plan does not include this endpoint"
    default_code = "not_entitled"

    def __init__(self, *, product: str):
        super().__init__()
        self.extra = upgrade_fields(product=product)


def upgrade_fields(*, product: str, more_calls_than: int | None = None) -> dict:
    """Where to go from a refusal that a plan change would lift: the portal's plan change page
    and the cheapest public plan that allows the call (None when no public plan does).

    Read from the in-process copy of the public plans: a flood of refusals runs no query each.
    """
    try:
        offer = plan_cheapest_allowing(product=product, more_calls_than=more_calls_than)
    except (OperationalError, InterfaceError):  # Postgres down: the refusal stands, without a suggestion
        offer = None
    plan = None if offer is None else {"slug": offer.slug, "name": offer.name, "price": str(offer.price)}
    # The page is linked by its URL name, not imported: billing sits above metering.
    return {"upgrade_url": settings.SITE_URL.rstrip("/") + reverse("billing-plan"), "upgrade_plan": plan}


def access_check(config: KeyConfig | None, product: str | None, *, raw_key: str | None = None) -> KeyConfig:
    """Raise the error a caller with this config gets, or return the config. With `raw_key`, a
    key that has no config (just reloaded) is told apart: revoked or never valid."""
    if config is None:
        raise key_refusal(raw_key) if raw_key else InvalidApiKey()
    if config.is_expired():
        raise InvalidApiKey()
    if config.access == Access.CANCELLED:
        raise AccountCancelled()
    if config.access == Access.PAYMENT_REQUIRED or config.payment_overdue():
        raise PaymentRequired()
    if product is not None and product not in config.entitlements:
        raise NotEntitled(product=product)
    return config


class HasActiveAccount(BasePermission):
    """Key present and account in good standing, for the /v1 routes that are not billed
    (/v1/usage, the usage export). Metered routes check the same in their gate (metering/gate.py),
    before the meter."""

    def has_permission(self, request, view) -> bool:
        if request.auth is None:
            raise ApiKeyRequired()
        access_check(request.auth, None)
        return True
