"""Per-client-address attempt limits for the public forms (signup, login).

The client address is REMOTE_ADDR and nothing else. X-Forwarded-For is written by whoever
sends the request, so trusting it would let an attacker pick a fresh "address" per attempt.
Behind a load balancer or reverse proxy, make the proxy layer set REMOTE_ADDR to the real
client (nginx `real_ip_header` + `set_real_ip_from`, gunicorn `--forwarded-allow-ips` with a
proxy that overwrites the header); otherwise every visitor shares the proxy's address.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from django.http import HttpRequest

from core.redis import (
    REDIS_UNAVAILABLE, redis_client, redis_is_marked_down, redis_mark_down, redis_mark_up,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    limited: bool
    retry_after: int = 0
    # True when an account's counter refused it rather than the client address's.
    per_account: bool = False

    @property
    def retry_minutes(self) -> int:
        return max(1, -(-self.retry_after // 60))


def client_ip(request: HttpRequest) -> str:
    """The address to count attempts against; an IPv6 client is counted by its /64."""
    raw = request.META.get("REMOTE_ADDR") or "unknown"
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # One IPv6 subscriber usually holds a whole /64: per-address counts would not bind.
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def attempt_count(*, scope: str, ident: str, limit: int, window_seconds: int) -> Attempt:
    """Count one attempt in a fixed window; `limited` once more than `limit` were made."""
    key = f"tb:ratelimit:{scope}:{ident}"
    if redis_is_marked_down(key):  # on a cluster: the breaker of the key's primary only
        return _limiter_unavailable(scope)
    try:
        # MULTI makes create-with-expiry and increment one step: no counter without a TTL.
        pipe = redis_client().pipeline(transaction=True)
        pipe.set(key, 0, ex=window_seconds, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = pipe.execute()
    except REDIS_UNAVAILABLE:
        redis_mark_down(key)
        return _limiter_unavailable(scope)
    redis_mark_up(key)  # back after an outage: the registered recovery runs once
    return Attempt(limited=count > limit, retry_after=max(int(ttl), 1))


def attempt_peek(*, scope: str, ident: str, limit: int) -> Attempt:
    """Whether `limit` attempts were already counted in the window, without counting one."""
    key = f"tb:ratelimit:{scope}:{ident}"
    if redis_is_marked_down(key):
        return _limiter_unavailable(scope)
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = pipe.execute()
    except REDIS_UNAVAILABLE:
        redis_mark_down(key)
        return _limiter_unavailable(scope)
    return Attempt(limited=int(count or 0) >= limit, retry_after=max(int(ttl), 1))


def _limiter_unavailable(scope: str) -> Attempt:
    # Fail open: an outage of the limiter must not lock every customer out of the site.
    logger.warning("rate limiter unavailable; allowing %s attempt", scope)
    return Attempt(limited=False)
