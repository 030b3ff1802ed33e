"""What the hot path needs to know about a key: built from Postgres, cached in-process.

A config carries its customer's `config_version`; the meter script compares it with the
version in Redis on every call, so a change made on any worker is seen at once. The
in-process copy also expires after KEY_CACHE_SECONDS. There is no shared copy in Redis: one
would outlive a change whose version could not be published (Redis unreachable at commit).
While this process has seen Redis fail and not yet reached it again, every call reads its
config from Postgres (it writes its count there anyway), and the copies built before are
dropped once Redis answers, so a change made during an outage holds on the first call after.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from cachetools import TTLCache

from django.conf import settings
from django.utils import timezone

from accounts.keyformat import key_hash
from accounts.models import ApiKey, Customer
from plans.models import Plan, Terms
from plans.services import terms_current

from . import connection

LOCAL_MAX_ENTRIES = 50_000
# Hashes no active key has (made up, revoked, expired): remembered apart from the configs, so a
# flood of made-up keys costs one query per key and per process and cannot evict real configs.
# None of them can become a valid key again, so they may be kept longer than configs.
UNKNOWN_MAX_ENTRIES = 100_000
UNKNOWN_KEY_SECONDS = 600


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
    overage_price: str  # Decimal as text: the config stays hashable and immutable
    entitlements: tuple[str, ...]
    expires_at: float | None  # epoch seconds; rotated keys stop at their grace end
    payment_due_at: float | None = None  # epoch seconds; past-due grace ends, then 402
    alert_at: tuple[int, ...] = ()  # month call counts at which usage_threshold_crossed is sent
    call_ceiling: int | None = None  # the customer's spend cap, in calls: refused from there on
    test: bool = False  # a test-mode key: its own small limits, never billed (README "The metered API")

    def is_expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def payment_overdue(self, now: float | None = None) -> bool:
        return self.payment_due_at is not None and (now or time.time()) >= self.payment_due_at

    @property
    def mode(self) -> str:
        return "test" if self.test else "live"


class Unknown:
    """Why a hash has no config: the answer differs (401 `invalid_api_key` or `key_revoked`)."""

    NO_SUCH_KEY = "no_such_key"
    REVOKED = "revoked"


_local: dict[str, tuple[KeyConfig | None, float]] = {}
_unknown: TTLCache = TTLCache(maxsize=UNKNOWN_MAX_ENTRIES, ttl=UNKNOWN_KEY_SECONDS)
_unknown_lock = threading.Lock()


def key_config_get(raw_key: str) -> KeyConfig | None:
    known, config = key_config_cached(raw_key)
    if known:
        return config
    return key_config_reload(raw_key)


def key_config_cached(raw_key: str) -> tuple[bool, KeyConfig | None]:
    """(True, config) when this process can answer without Postgres, (True, None) for a hash
    known to match no active key; (False, None) when only a lookup can tell."""
    digest = key_hash(raw_key)
    hit = _local.get(digest)
    # Not trusted while the customer's Redis (on a cluster: its primary) owes a recovery: the
    # recovery drops this cache, and the config may predate what that Redis missed.
    if hit is not None and hit[1] > time.monotonic() and \
            not connection.redis_outage_seen(connection.customer_key(hit[0].customer_id, "ver")):
        return True, hit[0]
    with _unknown_lock:
        if digest in _unknown:
            return True, None
    return False, None


def key_unknown_reason(raw_key: str) -> str:
    """Why the last lookup of this key found no config (Unknown): read from this process's memory."""
    with _unknown_lock:
        return _unknown.get(key_hash(raw_key), Unknown.NO_SUCH_KEY)


def key_config_reload(raw_key: str) -> KeyConfig | None:
    """Straight from Postgres, refreshing the cache (the meter script saw a newer version)."""
    digest = key_hash(raw_key)
    key = _key_row(digest)
    config = _build(key) if key is not None and key.is_active() else None
    revoked = key is not None and key.revoked_at is not None
    _remember(digest, config, Unknown.REVOKED if revoked else Unknown.NO_SUCH_KEY)
    return config


def _key_row(digest: str) -> ApiKey | None:
    return (ApiKey.objects.select_related("customer__plan", "customer__terms", "customer__usage_limits")
            .filter(key_hash=digest).first())


@connection.on_recovery
def key_config_forget_local() -> None:
    _local.clear()
    with _unknown_lock:
        _unknown.clear()


def _remember(digest: str, config: KeyConfig | None, reason: str = Unknown.NO_SUCH_KEY) -> None:
    if config is None:
        _local.pop(digest, None)
        with _unknown_lock:
            _unknown[digest] = reason
        return
    if len(_local) >= LOCAL_MAX_ENTRIES:
        _local.clear()
    _local[digest] = (config, time.monotonic() + settings.KEY_CACHE_SECONDS)


def _build(key: ApiKey) -> KeyConfig:
    customer = key.customer
    plan, access, payment_due_at = _effective_plan(customer)
    limits = getattr(customer, "usage_limits", None)
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
        alert_at=tuple(sorted(set(limits.alert_at_calls))) if limits else (),
        call_ceiling=limits.call_ceiling if limits else None,
        test=key.is_test,
    )


def _effective_plan(customer: Customer) -> tuple[Terms | Plan, str, float | None]:
    """The terms the API enforces: the customer's own snapshot (README "Billing"), never the live plan."""
    terms = customer.terms or terms_current(plan=customer.plan)
    if customer.status == Customer.Status.CANCELLED:
        return terms, Access.CANCELLED, None
    if customer.status == Customer.Status.PAST_DUE:
        grace_end = (customer.past_due_since or timezone.now()) + timedelta(days=settings.BILLING_GRACE_DAYS)
        if timezone.now() >= grace_end:
            return terms, Access.PAYMENT_REQUIRED, None
        # During the grace period the customer keeps serving, at the default plan's limits (limits,
        # not money: the live plan's); the deadline travels with the cached config.
        fallback = Plan.objects.filter(is_default=True).first() or terms
        return fallback, Access.OK, grace_end.timestamp()
    return terms, Access.OK, None
