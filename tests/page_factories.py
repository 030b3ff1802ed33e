"""Helpers for the page tests (signup, login, portal): seeded plans and form data."""
from __future__ import annotations

from importlib import import_module

from plans.models import Plan

from .factories import seeded_plan

STRONG_PASSWORD = "violet-Harbour-93-lantern"


def seeded_public_plans() -> list[Plan]:
    """All seeded plans (README "Plans"), re-created if a transactional test flushed them."""
    rows = import_module("plans.migrations.0002_seed_plans").PLANS
    return [seeded_plan(row["slug"]) for row in rows]


def signup_data(**overrides: str) -> dict[str, str]:
    data = {
        "email": "ada@example.com",
        "company": "Analytical Engines Ltd",
        "password": STRONG_PASSWORD,
        "plan": "starter",
    }
    return {**data, **overrides}
