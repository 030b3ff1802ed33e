"""What the hot path needs to know about a key, cached in-process, then Redis, then Postgres.

A config carries its customer's `config_version`; the meter script compares it with the
version in Redis on every call, so a change made on any worker is seen at once. The
in-process copy also expires after KEY_CACHE_SECONDS, which bounds staleness when Redis
is down.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.keyformat import key_hash
from accounts.models import ApiKey, Customer
from plans.models import Plan

from . import connection

# Short enough that a change whose version could not be published (Redis unreachable at
# commit time) is still picked up within a minute of Redis coming back.
REDIS_TTL_SECONDS = 60
LOCAL_MAX_ENTRIES = 50_000


class Access:
    """Whether the customer may call at all (decided when the config is built)."""

    OK = "ok"
    CANCELLED = "cancelled"
    PAYMENT_REQUIRED = "payment_required"


@dataclass(frozen=True, slots=True)
class KeyConfig:
    key_id: int
    customer_id: int
    version: int
    access: str
    plan_name: str
    rate_per_minute: int
    included_calls: int
    hard_cap: bool
    overage_price: str  # Decimal as text: the config travels through Redis as JSON
    entitlements: tuple[str, ...]
    expires_at: float | None  # epoch seconds; rotated keys stop at their grace end
    payment_due_at: float | None = None  # epoch seconds; past-due grace ends, then 402

    def is_expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def payment_overdue(self, now: float | None = None) -> bool:
        return self.payment_due_at is not None and (now or time.time()) >= self.payment_due_at


_local: dict[str, tuple[KeyConfig | None, float]] = {}


def key_config_get(raw_key: str) -> KeyConfig | None:
    digest = key_hash(raw_key)
    hit = _local.get(digest)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    config = _from_redis(digest)
    if config is None:
        config = key_config_load(digest)
    _remember(digest, config)
    return config


def key_config_reload(raw_key: str) -> KeyConfig | None:
    """Straight from Postgres, refreshing both caches (the meter script saw a newer version)."""
    digest = key_hash(raw_key)
    config = key_config_load(digest)
    _remember(digest, config)
    return config


def key_config_load(digest: str) -> KeyConfig | None:
    key = ApiKey.objects.select_related("customer__plan").filter(key_hash=digest).first()
    if key is None or not key.is_active():
        return None
    config = _build(key)
    if not connection.redis_is_marked_down():
        try:
            connection.redis_client().set(redis_config_key(digest), json.dumps(asdict(config)), ex=REDIS_TTL_SECONDS)
        except connection.UNAVAILABLE:
            connection.redis_mark_down()
    return config


def redis_config_key(digest: str) -> str:
    return f"tb:key:{digest}"


def key_config_forget_local() -> None:
    _local.clear()


def _remember(digest: str, config: KeyConfig | None) -> None:
    if len(_local) >= LOCAL_MAX_ENTRIES:
        _local.clear()
    _local[digest] = (config, time.monotonic() + settings.KEY_CACHE_SECONDS)


def _from_redis(digest: str) -> KeyConfig | None:
    if connection.redis_is_marked_down():
        return None
    try:
        payload = connection.redis_client().get(redis_config_key(digest))
    except connection.UNAVAILABLE:
        connection.redis_mark_down()
        return None
    if payload is None:
        return None
    data = json.loads(payload)
    data["entitlements"] = tuple(data["entitlements"])
    return KeyConfig(**data)


def _build(key: ApiKey) -> KeyConfig:
    customer = key.customer
    plan, access, payment_due_at = _effective_plan(customer)
    return KeyConfig(
        key_id=key.pk,
        customer_id=customer.pk,
        version=customer.config_version,
        access=access,
        plan_name=plan.name,
        rate_per_minute=plan.rate_per_minute,
        included_calls=plan.included_calls,
        hard_cap=plan.hard_cap,
        overage_price=str(plan.overage_price),
        entitlements=tuple(plan.entitlements),
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        payment_due_at=payment_due_at,
    )


def _effective_plan(customer: Customer) -> tuple[Plan, str, float | None]:
    if customer.status == Customer.Status.CANCELLED:
        return customer.plan, Access.CANCELLED, None
    if customer.status == Customer.Status.PAST_DUE:
        grace_end = (customer.past_due_since or timezone.now()) + timedelta(days=settings.BILLING_GRACE_DAYS)
        if timezone.now() >= grace_end:
            return customer.plan, Access.PAYMENT_REQUIRED, None
        # During the grace period the customer keeps serving, at the default plan's limits;
        # the deadline travels with the cached config so no cache can outlive it.
        fallback = Plan.objects.filter(is_default=True).first() or customer.plan
        return fallback, Access.OK, grace_end.timestamp()
    return customer.plan, Access.OK, None
