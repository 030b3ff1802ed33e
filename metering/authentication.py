from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from accounts.keyformat import key_is_well_formed
from accounts.ratelimit import attempt_count, attempt_peek, client_ip

from .keyconfig import KeyConfig, Unknown, key_config_cached, key_config_get, key_unknown_reason


class ApiCaller:
    """The request's user on /v1: built from the cached key config, so no SQL per call."""

    __slots__ = ("config",)
    is_authenticated = True
    is_anonymous = False
    is_active = True

    def __init__(self, config: KeyConfig) -> None:
        self.config = config

    @property
    def pk(self) -> int:
        return self.config.customer_id


MODE_HEADER = "Tollbooth-Mode"


def mode_header_set(request, response) -> None:
    """`Tollbooth-Mode: test` or `live` on every answer to a known key, refusals included
    (README "The metered API", test mode): a client can tell which mode answered."""
    mode = getattr(request, "api_key_mode", None)  # set once the key is known, before any refusal
    if mode is not None:
        response[MODE_HEADER] = mode


class InvalidApiKey(exceptions.AuthenticationFailed):
    default_detail = "Invalid API key"
    default_code = "invalid_api_key"


class KeyRevoked(exceptions.AuthenticationFailed):
    default_detail = "This API key was revoked"
    default_code = "key_revoked"


def key_refusal(raw: str) -> exceptions.AuthenticationFailed:
    """The 401 for a key that has no config: `key_revoked` when the key existed and was revoked
    (as this process's last lookup found it), else `invalid_api_key`."""
    return KeyRevoked() if key_unknown_reason(raw) == Unknown.REVOKED else InvalidApiKey()


class TooManyInvalidKeys(exceptions.Throttled):
    default_detail = "Too many invalid API keys from this address"
    default_code = "too_many_invalid_keys"

    def __init__(self, wait: int):
        super().__init__(wait=wait, detail=self.default_detail, code=self.default_code)
        self.detail = exceptions.ErrorDetail(self.default_detail, self.default_code)


def raw_key_from(request) -> str | None:
    meta = request.META  # once: on a DRF request each read is forwarded to Django's
    header = meta.get("HTTP_AUTHORIZATION")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip() or None
    return meta.get("HTTP_X_API_KEY", "").strip() or None


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>` (README "The metered API")."""

    def authenticate(self, request):
        raw = raw_key_from(request)
        if raw is None:
            return None
        known, config = key_config_cached(raw)
        if not known:
            # The shape and the CRC32 tail reject typos and guesses before any database lookup;
            # a key this process already knows passed both when it was first seen (one hash per
            # call, nothing else).
            if not key_is_well_formed(raw):
                raise InvalidApiKey()
            config = _looked_up(request, raw)
        if config is None:
            raise key_refusal(raw)
        if config.is_expired():
            raise InvalidApiKey()
        request.raw_api_key = raw
        request.api_key_mode = config.mode
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
