"""Properties of any month through the database: plan changes, a trial and usage drawn at random.

The pure rating's own properties are in test_rating.py."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings, strategies as st

from core.money import money
from plans.services import terms_current
from billing.models import Invoice, PlanChange
from billing.invoicing import invoice_generate
from tests.factories import CustomerFactory, seeded_plan

from .conftest import at, usage, utc

PERIOD = "2026-11"
START = utc(2026, 11, 1)
SLUGS = ["free", "starter", "pro", "enterprise"]

moments = st.integers(min_value=-40 * 24 * 60, max_value=30 * 24 * 60 - 1).map(lambda m: START + timedelta(minutes=m))
month = st.fixed_dictionaries({
    "created": moments,
    "first": st.sampled_from(SLUGS),
    "changes": st.lists(st.tuples(moments, st.sampled_from(SLUGS), st.sampled_from(["customer", "cancelled"])), max_size=6),
    "trial_days": st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
    "usage": st.dictionaries(st.integers(min_value=1, max_value=30), st.integers(min_value=0, max_value=3_000_000), max_size=8),
})


def _history(case: dict, plans: dict) -> tuple[list[tuple], dict]:
    """Plan-change rows after signup, each to a plan other than the one then held."""
    rows, held = [], plans[case["first"]]
    for moment, slug, reason in sorted(case["changes"]):
        moment = max(moment, case["created"])
        target = held if reason == "cancelled" else plans[slug]
        if reason == "customer" and target == held:
            continue
        rows.append((moment, held.pk, target.pk, reason))
        held = target
    return rows, held


def _held(case: dict, plans: dict, rows: list[tuple]) -> list:
    ids = {plans[case["first"]].pk} | {row[2] for row in rows}
    return [plan for plan in plans.values() if plan.pk in ids]


def _check(total: Decimal, lines: list, plans_held: list) -> None:
    assert total == sum((line.amount for line in lines), Decimal("0"))
    assert total >= 0 and all(line.amount == money(line.amount) for line in lines)
    base = sum((line.amount for line in lines if line.kind == "base"), Decimal("0"))
    assert base <= max(plan.price for plan in plans_held)


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=month)
def test_regenerating_any_month_returns_the_identical_invoice(case):
    plans = {slug: seeded_plan(slug) for slug in SLUGS}
    rows, held = _history(case, plans)
    customer = CustomerFactory(
        plan=plans[case["first"]], created_at=case["created"],
        trial_ends_at=case["created"] + timedelta(days=case["trial_days"]) if case["trial_days"] else None,
    )
    customer.plan = held  # signed up on the first plan, holds the last one now
    customer.save()
    PlanChange.objects.bulk_create([
        PlanChange(customer=customer, at=moment, from_plan_id=a, to_plan_id=b, reason=reason,
                   terms=terms_current(plan=next(p for p in plans.values() if p.pk == b)))
        for moment, a, b, reason in rows
    ])
    for day, calls in case["usage"].items():
        usage(customer, date(2026, 11, day), calls)
    with at(utc(2026, 12, 1, 0, 30)):
        try:
            first = invoice_generate(customer=customer, period=PERIOD)
        except ValidationError as error:  # cancelled before November: nothing to bill
            assert "no billable days" in str(error)
            return
        snapshot = _snapshot(first)
        second = invoice_generate(customer=customer, period=PERIOD)
    assert _snapshot(second) == snapshot and Invoice.objects.filter(customer=customer).count() == 1
    _check(second.total, list(second.lines.all()), _held(case, plans, rows))


def _snapshot(invoice: Invoice) -> tuple:
    invoice = Invoice.objects.get(pk=invoice.pk)
    lines = tuple(invoice.lines.values_list("pk", "kind", "description", "quantity", "unit_price", "amount"))
    return invoice.pk, invoice.total, invoice.subtotal, invoice.calls, invoice.plan_id, lines
