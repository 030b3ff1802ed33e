from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from accounts.keyformat import key_is_well_formed
from accounts.ratelimit import attempt_count, attempt_peek, client_ip

from .keyconfig import KeyConfig, key_config_cached, key_config_get


@dataclass(frozen=True, slots=True)
class ApiCaller:
    """The request's user on /v1: built from the cached key config, so no SQL per call."""

    config: KeyConfig
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True

    @property
    def pk(self) -> int:
        return self.config.customer_id


class InvalidApiKey(exceptions.AuthenticationFailed):
    default_detail = "Invalid API key"
    default_code = "invalid_api_key"


class TooManyInvalidKeys(exceptions.Throttled):
    default_detail = "Too many invalid API keys from this address"
    default_code = "too_many_invalid_keys"

    def __init__(self, wait: int):
        super().__init__(wait=wait, detail=self.default_detail, code=self.default_code)
        self.detail = exceptions.ErrorDetail(self.default_detail, self.default_code)


def raw_key_from(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip() or None
    return request.META.get("HTTP_X_API_KEY", "").strip() or None


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>` (README "The metered API")."""

    def authenticate(self, request):
        raw = raw_key_from(request)
        if raw is None:
            return None
        # The CRC32 tail rejects typos and guesses before any cache or database lookup.
        if not key_is_well_formed(raw):
            raise InvalidApiKey()
        known, config = key_config_cached(raw)
        if not known:
            config = _looked_up(request, raw)
        if config is None or config.is_expired():
            raise InvalidApiKey()
        request.raw_api_key = raw
        return ApiCaller(config=config), config

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


def _looked_up(request, raw: str) -> KeyConfig | None:
    """A key this process has not seen: one query, unless the client address already sent too
    many keys that matched nothing (a well-formed made-up key passes the checksum)."""
    scope, ident = "v1-invalid-key", client_ip(request)
    refused = attempt_peek(scope=scope, ident=ident, limit=settings.API_INVALID_KEYS_PER_MINUTE)
    if refused.limited:
        raise TooManyInvalidKeys(wait=refused.retry_after)
    config = key_config_get(raw)
    if config is None:
        attempt_count(scope=scope, ident=ident, limit=settings.API_INVALID_KEYS_PER_MINUTE, window_seconds=60)
    return config
