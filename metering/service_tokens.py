"""Who is asking on the verify API (README "Sell your own API"): a product's own service, by its
service token. Tokens are looked up in Postgres once and then remembered in-process; a flood of
made-up tokens is counted per address like invalid API keys."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from cachetools import TTLCache
from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from accounts.ratelimit import attempt_count, attempt_peek, client_ip
from plans.models import Product
from plans.services import product_by_token, service_token_hash

from .authentication import TooManyInvalidKeys

SERVICE_TOKEN_PATTERN = re.compile(r"^tbs_[0-9a-f]{48}$")
# Products are few; a flood of made-up tokens is remembered apart, so it cannot evict them.
KNOWN_MAX_ENTRIES = 1_000
UNKNOWN_MAX_ENTRIES = 10_000
UNKNOWN_TOKEN_SECONDS = 600


class InvalidServiceToken(exceptions.AuthenticationFailed):
    default_detail = "Invalid service token"
    default_code = "invalid_service_token"


class TooManyInvalidServiceTokens(TooManyInvalidKeys):
    default_detail = "Too many invalid service tokens from this address"


@dataclass(frozen=True, slots=True)
class ServiceCaller:
    """The request's user on the verify API: the product whose service token was sent."""

    product: str
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True


# token hash -> (product slug, or None for an inactive product; monotonic expiry)
_known: dict[str, tuple[str | None, float]] = {}
_unknown: TTLCache = TTLCache(maxsize=UNKNOWN_MAX_ENTRIES, ttl=UNKNOWN_TOKEN_SECONDS)
_unknown_lock = threading.Lock()


def service_product_cached(raw_token: str) -> tuple[bool, str | None]:
    """(True, slug) for an active product's token, (True, None) for a token known to open
    nothing, (False, None) when only a lookup can tell. No SQL, no Redis."""
    digest = service_token_hash(raw_token)
    hit = _known.get(digest)
    if hit is not None and hit[1] > time.monotonic():
        return True, hit[0]
    with _unknown_lock:
        if digest in _unknown:
            return True, None
    return False, None


def service_product_load(raw_token: str) -> str | None:
    """The active product `raw_token` opens, from Postgres, remembered for KEY_CACHE_SECONDS (a
    rotated token or a deactivated product stops working in every process within that)."""
    product = product_by_token(raw_token)
    digest = service_token_hash(raw_token)
    if product is None:
        with _unknown_lock:
            _unknown[digest] = True
        return None
    if len(_known) >= KNOWN_MAX_ENTRIES:
        _known.clear()
    slug = product.slug if product.active else None
    _known[digest] = (slug, time.monotonic() + settings.KEY_CACHE_SECONDS)
    return slug


@receiver([post_save, post_delete], sender=Product)
def service_products_forget(**_signal_kwargs) -> None:
    """A product changed (token rotated, deactivated, deleted): this process asks Postgres again.
    Other processes notice within KEY_CACHE_SECONDS."""
    _known.clear()
    with _unknown_lock:
        _unknown.clear()


class ServiceTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <service token>`, the token of the product being called."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        raw = value.strip()
        if scheme.lower() != "bearer" or not raw:
            return None
        if not SERVICE_TOKEN_PATTERN.match(raw):
            raise InvalidServiceToken()
        known, slug = service_product_cached(raw)
        if not known:
            slug = _looked_up(request, raw)
        if slug is None:
            raise InvalidServiceToken()
        return ServiceCaller(product=slug), slug

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="verify"'


def _looked_up(request, raw: str) -> str | None:
    # A well-formed made-up token costs a query: count them per address, as for API keys.
    scope, ident = "v1-invalid-service-token", client_ip(request)
    refused = attempt_peek(scope=scope, ident=ident, limit=settings.API_INVALID_KEYS_PER_MINUTE)
    if refused.limited:
        raise TooManyInvalidServiceTokens(wait=refused.retry_after)
    slug = service_product_load(raw)
    if slug is None:
        attempt_count(scope=scope, ident=ident, limit=settings.API_INVALID_KEYS_PER_MINUTE, window_seconds=60)
    return slug


class ServiceTokenRequired(BasePermission):
    def has_permission(self, request, view) -> bool:
        if request.auth is None:
            raise InvalidServiceToken("Service token required")
        return True
