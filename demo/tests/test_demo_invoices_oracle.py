"""Every demo invoice agrees with an independent recomputation of README "Billing" (issue 13's audit:
27 of 195 demo invoices were wrong and the nightly reconciliation, recomputing with the
invoice's own function, saw none). The recomputation is tests/billing_oracle.py, which shares no
code with billing's rating."""
from __future__ import annotations

from collections import Counter
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction

from accounts.models import Customer
from billing.models import Invoice
from tests.billing_oracle import expected_invoice, mismatch

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker):
    """One seed for the module's tests, rolled back at the end."""
    with django_db_blocker.unblock(), transaction.atomic():
        call_command("demo_seed", stdout=StringIO())
        yield
        transaction.set_rollback(True)


def test_the_plan_history_is_one_chain_from_the_signup_terms_to_the_plan_held_now(seeded):
    # The recomputation starts every customer on its signup terms and replays its changes: the
    # history must say where each customer really started, or both sides would agree on a fiction.
    broken = []
    for customer in Customer.objects.select_related("signup_terms"):
        held = customer.signup_terms.plan_id
        for change in customer.plan_changes.select_related("terms").order_by("at", "pk"):
            chained = change.from_plan_id == held and change.terms.plan_id == change.to_plan_id
            if not chained or change.at < customer.created_at:
                broken.append((customer.company, change.reason, change.at, change.from_plan_id, held))
            if change.reason != "cancelled":
                held = change.to_plan_id
        if held != customer.plan_id:
            broken.append((customer.company, "held now", customer.plan_id, held))
    assert broken == []


def test_every_stored_invoice_charges_what_the_independent_recomputation_gives(seeded):
    invoices = list(Invoice.objects.select_related("customer").order_by("customer_id", "period"))
    wrong, shapes = [], Counter()
    for invoice in invoices:
        if (problem := mismatch(invoice)) is not None:
            wrong.append(problem)
        expected = expected_invoice(invoice.customer, invoice.period)
        shapes["runs"] += sum(line.kind == "base" for line in expected.lines) >= 2
        shapes["overage"] += any(line.kind == "overage" for line in expected.charged)
        shapes["trial"] += expected.trial_days > 0
    assert wrong == [], f"{len(wrong)} of {len(invoices)} invoices differ:\n" + "\n".join(wrong)
    # The comparison means something only if the demo has months of several runs, overage and trials.
    assert len(invoices) >= 100 and min(shapes[shape] for shape in ("runs", "overage", "trial")) >= 3, shapes
