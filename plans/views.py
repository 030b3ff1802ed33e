from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .selectors import plans_public


def pricing(request: HttpRequest) -> HttpResponse:
    return render(request, "plans/pricing.html", {"plans": plans_public()})
