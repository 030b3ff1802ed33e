from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.permissions import BasePermission

from .authentication import InvalidApiKey
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


def access_check(config: KeyConfig | None, product: str | None) -> KeyConfig:
    """Raise the error a caller with this config gets, or return the config."""
    if config is None or config.is_expired():
        raise InvalidApiKey()
    if config.access == Access.CANCELLED:
        raise AccountCancelled()
    if config.access == Access.PAYMENT_REQUIRED or config.payment_overdue():
        raise PaymentRequired()
    if product is not None and product not in config.entitlements:
        raise NotEntitled()
    return config


class HasActiveAccount(BasePermission):
    """Key present, account in good standing and, for a product endpoint, entitled to it.

    Runs before the throttle, so a refused call is never counted.
    """

    def has_permission(self, request, view) -> bool:
        if request.auth is None:
            raise ApiKeyRequired()
        access_check(request.auth, getattr(view, "product", None))
        return True
