"""Reads of plans."""
from __future__ import annotations

from django.db.models import QuerySet

from .models import Plan


def plans_public() -> QuerySet[Plan]:
    """Plans shown on the pricing page and open to signup, in display order."""
    return Plan.objects.filter(is_public=True).order_by("sort_order", "price", "pk")
