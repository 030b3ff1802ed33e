"""Writes of plans: the terms a customer takes from a plan."""
from __future__ import annotations

from django.db import transaction

from .models import Plan, Terms


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
