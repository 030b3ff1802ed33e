"""Reads of plans."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet

from .models import Plan, Product

# Each process keeps the public plans this long; a Plan saved or deleted here clears it at once.
OFFERS_CACHE_SECONDS = 60.0
# The same for products: the gateway looks one up on every call and must not run a query each.
PRODUCTS_CACHE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class PlanOffer:
    """What an upgrade suggestion needs to know about a public plan."""

    slug: str
    name: str
    price: Decimal
    included_calls: int
    hard_cap: bool
    entitlements: tuple[str, ...]


_offers: tuple[tuple[PlanOffer, ...], float] | None = None


def plans_public() -> QuerySet[Plan]:
    """Plans shown on the pricing page and open to signup, in display order."""
    return Plan.objects.filter(is_public=True).order_by("sort_order", "price", "pk")


def plan_offers_public() -> tuple[PlanOffer, ...]:
    """The public plans, cheapest first, from an in-process copy: a flood of refused API calls
    asks for them on every call and must not run a query each."""
    global _offers
    cached = _offers
    if cached is not None and time.monotonic() < cached[1]:
        return cached[0]
    offers = tuple(
        PlanOffer(slug=p.slug, name=p.name, price=p.price, included_calls=p.included_calls,
                  hard_cap=p.hard_cap, entitlements=tuple(p.entitlements))
        for p in plans_public().order_by("price", "sort_order", "pk").prefetch_related("products")
    )
    _offers = (offers, time.monotonic() + OFFERS_CACHE_SECONDS)
    return offers


def plan_offers_forget(**_signal_kwargs) -> None:
    """Drop this process's copy of the public plans (a Plan changed, or a test starts)."""
    global _offers
    _offers = None


def plan_cheapest_allowing(*, product: str, more_calls_than: int | None = None) -> PlanOffer | None:
    """The cheapest public plan entitled to `product`; with `more_calls_than`, one that also
    includes more calls than that or has no hard cap (overage instead of refusals)."""
    for offer in plan_offers_public():
        if product not in offer.entitlements:
            continue
        if more_calls_than is None or offer.included_calls > more_calls_than or not offer.hard_cap:
            return offer
    return None


@dataclass(frozen=True, slots=True)
class ProductView:
    """What the API's hot path needs to know about a product (a copy, no database behind it)."""

    pk: int
    slug: str
    name: str
    description: str
    kind: str
    upstream_url: str
    methods: frozenset[str]
    timeout_seconds: int
    body_limit_bytes: int
    active: bool
    signing_secret: str
    service_token_hash: str

    @property
    def is_upstream(self) -> bool:
        return self.kind == Product.Kind.UPSTREAM


_products: tuple[dict[str, ProductView], float] | None = None


def _product_view(product: Product) -> ProductView:
    return ProductView(
        pk=product.pk, slug=product.slug, name=product.name, description=product.description, kind=product.kind,
        upstream_url=product.upstream_url, methods=frozenset(product.allowed_methods()),
        timeout_seconds=product.timeout_seconds, body_limit_bytes=product.body_limit_bytes, active=product.active,
        signing_secret=product.signing_secret, service_token_hash=product.service_token_hash,
    )


def products_all_cached() -> dict[str, ProductView]:
    """Every product (active or not) by slug, in display order, from an in-process copy that a
    Product saved or deleted in this process clears at once; other processes see it within
    PRODUCTS_CACHE_SECONDS."""
    global _products
    cached = _products
    if cached is not None and time.monotonic() < cached[1]:
        return cached[0]
    views = {product.slug: _product_view(product) for product in Product.objects.order_by("sort_order", "slug")}
    _products = (views, time.monotonic() + PRODUCTS_CACHE_SECONDS)
    return views


def product_for_slug(slug: str) -> ProductView | None:
    """The product at /v1/<slug>/, or None when there is none (inactive ones included: callers decide)."""
    return products_all_cached().get(slug)


def products_forget(**_signal_kwargs) -> None:
    """Drop this process's copy of the products (a Product changed, or a test starts)."""
    global _products
    _products = None


def product_names() -> dict[str, str]:
    """Display name by slug for every product, for labelling usage (a slug no row has keeps its slug)."""
    return {slug: view.name for slug, view in products_all_cached().items()}


def products_active() -> QuerySet[Product]:
    """Products open for calls, in display order (pricing page, API docs)."""
    return Product.objects.filter(active=True).order_by("sort_order", "slug")


# A staff-written line about something a plan's fields decide (calls, rate, overage, APIs,
# alerts, webhooks, caps, trials) is left out: the fields say it, and say it right when they
# change. Lines about what no field holds (support, an SLA) are kept.
_DERIVED_TOPICS = re.compile(
    r"calls? ?/|per (extra )?call|\bapis?\b|geocod|text analysis|image|webhook|alert|spend cap|hard cap|trial",
    re.IGNORECASE,
)


def plan_features(plan: Plan) -> tuple[str, ...]:
    """What a plan really allows, for its pricing card, from its own fields and the rules that
    read them (README "Alerts, spend caps and webhooks"): every plan has usage alerts and
    webhooks; a spend cap needs a plan that bills money, as the settings page's form does;
    then the staff's lines about anything else (plan.features)."""
    lines = []
    if plan.has_trial:
        lines.append(f"{plan.trial_days}-day free trial, no card needed")
    if plan.hard_cap:
        lines.append("Calls stop at the included ones: never a bill beyond the price")
    lines.append("Usage alerts by email at the percentages you choose")
    lines.append("Webhooks for usage, invoices and payments, signed")
    if plan.is_paid:
        lines.append("A monthly spend cap: alert only, or pause calls")
    lines.extend(line for line in plan.features if isinstance(line, str) and not _DERIVED_TOPICS.search(line))
    return tuple(lines)
