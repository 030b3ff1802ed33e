"""Writes of plans: the terms a customer takes from a plan, and the products plans sell."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import Max

from .models import BuiltinProduct, Plan, Product, Terms


def _plan_values(plan: Plan) -> tuple:
    return tuple(
        list(plan.entitlements) if name == "entitlements" else getattr(plan, name) for name in Terms.VALUE_FIELDS
    )


@transaction.atomic
def terms_current(*, plan: Plan) -> Terms:
    """The plan's terms as they stand now: its newest snapshot while the plan is unchanged, else a new one.

    The plan row is locked, so two signups after an edit share one new snapshot.
    """
    locked = Plan.objects.select_for_update().get(pk=plan.pk)
    wanted = _plan_values(locked)
    newest = Terms.objects.filter(plan=locked).order_by("-pk").first()
    if newest is not None and newest.values() == wanted:
        return newest
    return Terms.objects.create(plan=locked, **dict(zip(Terms.VALUE_FIELDS, wanted)))


# --- products ---

SERVICE_TOKEN_PREFIX = "tbs_"
SIGNING_SECRET_PREFIX = "whsec_"


def service_token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def product_secrets_rotate(product: Product) -> tuple[str, str]:
    """New service token and signing secret for `product`; the old ones stop working at once.

    Returns (raw service token, signing secret): the token is stored only as its hash, so this
    is the one time anyone sees it."""
    raw_token = SERVICE_TOKEN_PREFIX + secrets.token_hex(24)
    signing_secret = SIGNING_SECRET_PREFIX + secrets.token_hex(32)
    product.service_token_hash = service_token_hash(raw_token)
    product.service_token_last4 = raw_token[-4:]
    product.signing_secret = signing_secret
    if product.pk is not None:
        product.save(update_fields=["service_token_hash", "service_token_last4", "signing_secret"])
    return raw_token, signing_secret


@transaction.atomic
def product_create(
    *, slug: str, name: str, upstream_url: str, description: str = "", methods: str = "GET,POST",
    timeout_seconds: int = 30, body_limit_bytes: int | None = None, health_path: str = "/",
    plans: Iterable[Plan] = (),
) -> tuple[Product, str, str]:
    """An upstream product, on sale in `plans` for new terms (existing customers: billing's
    plan_product_added). Returns (product, raw service token, signing secret), shown once."""
    product = Product(
        slug=slug, name=name, description=description, kind=Product.Kind.UPSTREAM, upstream_url=upstream_url,
        methods=",".join(sorted({m.strip().upper() for m in methods.split(",") if m.strip()})) or methods,
        timeout_seconds=timeout_seconds, health_path=health_path or "/", sort_order=product_sort_order_next(),
    )
    if body_limit_bytes is not None:
        product.body_limit_bytes = body_limit_bytes
    raw_token, signing_secret = product_secrets_rotate(product)
    product.full_clean()
    product.save()
    product.plans.add(*plans)
    return product, raw_token, signing_secret


def product_sort_order_next() -> int:
    """After every product so far: a new product lists after the ones customers know."""
    return (Product.objects.aggregate(top=Max("sort_order"))["top"] or 0) + 10


def product_by_token(raw: str) -> Product | None:
    """The product whose service token is `raw` (the verify API's caller), or None."""
    if not raw or not raw.startswith(SERVICE_TOKEN_PREFIX):
        return None
    digest = service_token_hash(raw)
    product = Product.objects.filter(service_token_hash=digest).first()
    # The lookup is by an index on the hash; compare again in constant time all the same.
    if product is None or not hmac.compare_digest(product.service_token_hash, digest):
        return None
    return product


def products_builtin_ensure() -> list[Product]:
    """The analyzers Tollbooth ships, as rows (made if missing; existing rows are left as staff edited them)."""
    return Product.objects.builtin_ensure(BuiltinProduct.values)



# "Check upstream" waits at most this long, whatever the product's own timeout: staff are waiting.
UPSTREAM_CHECK_MAX_SECONDS = 5.0


@dataclass(frozen=True)
class UpstreamCheck:
    url: str
    status: int | None  # None: no HTTP answer at all
    latency_ms: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 400


def product_health_url(product: Product) -> str:
    return product.upstream_url.rstrip("/") + "/" + (product.health_path or "/").lstrip("/")


def product_upstream_check(product: Product) -> UpstreamCheck:
    """One GET to the product's health URL (redirects not followed): its status and latency.
    Never raises: every failure comes back as `error`."""
    url = product_health_url(product)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return UpstreamCheck(url=url, status=None, latency_ms=None, error="not an http(s) URL")
    timeout = min(float(product.timeout_seconds or UPSTREAM_CHECK_MAX_SECONDS), UPSTREAM_CHECK_MAX_SECONDS)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        connection = connection_class(parts.hostname, parts.port, timeout=timeout)  # .port: ValueError if bad
        try:
            connection.request("GET", target, headers={"User-Agent": "Tollbooth upstream check"})
            status = connection.getresponse().status
        finally:
            connection.close()
    except TimeoutError:
        return UpstreamCheck(url=url, status=None, latency_ms=None, error=f"no answer within {timeout:g} s")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return UpstreamCheck(url=url, status=None, latency_ms=None, error=str(exc) or type(exc).__name__)
    return UpstreamCheck(url=url, status=status, latency_ms=round((time.monotonic() - started) * 1000))
