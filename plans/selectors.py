"""Reads of plans."""
from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet

from .models import Plan

# Each process keeps the public plans this long; a Plan saved or deleted here clears it at once.
OFFERS_CACHE_SECONDS = 60.0


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
        for p in plans_public().order_by("price", "sort_order", "pk")
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
