from __future__ import annotations

from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .selectors import plan_features, plans_public, products_active


def pricing(request: HttpRequest) -> HttpResponse:
    # Each card lists the products on sale in it; a product staff switched off is not.
    on_sale = Prefetch("products", queryset=products_active(), to_attr="products_on_sale")
    plans = list(plans_public().prefetch_related(on_sale))
    for plan in plans:
        plan.feature_lines = plan_features(plan)
    return render(request, "plans/pricing.html", {"plans": plans, "products": products_active()})
