from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from accounts.models import Customer
from plans.models import Plan
from plans.services import products_builtin_ensure


def seeded_plan(slug: str) -> Plan:
    """One of the seeded plans (README "Plans"), as the data migration writes it (transactional tests flush it)."""
    from importlib import import_module

    rows = {row["slug"]: row for row in import_module("plans.migrations.0002_seed_plans").PLANS}
    values = dict(rows[slug])
    values.pop("slug")
    values["price"] = Decimal(values["price"])
    values["overage_price"] = Decimal(values["overage_price"])
    products_builtin_ensure()  # a transactional test's flush empties the products table too
    plan, _ = Plan.objects.get_or_create(slug=slug, defaults=values)
    return plan


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    username = factory.LazyAttribute(lambda o: o.email.lower())
    password = factory.django.Password("correct horse battery staple")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    owner = factory.SubFactory(UserFactory)
    company = factory.Sequence(lambda n: f"Company {n}")
    plan = factory.LazyFunction(lambda: seeded_plan("starter"))
    status = Customer.Status.ACTIVE


class PlanChangeFactory(factory.django.DjangoModelFactory):
    """A recorded plan change; pass customer, from_plan, to_plan and at."""

    class Meta:
        model = "billing.PlanChange"

    customer = factory.SubFactory(CustomerFactory)
    from_plan = factory.LazyAttribute(lambda o: o.customer.plan)
    to_plan = factory.LazyFunction(lambda: seeded_plan("pro"))


class InvoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "billing.Invoice"

    customer = factory.SubFactory(CustomerFactory)
    period = "2026-10"
    status = "open"
    plan = factory.LazyAttribute(lambda o: o.customer.plan)
    number = factory.Sequence(lambda n: f"TB-TEST-{n:06d}")


class InvoiceLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "billing.InvoiceLine"

    invoice = factory.SubFactory(InvoiceFactory)
    kind = "base"
    description = factory.LazyAttribute(lambda o: f"{o.kind} line")
    quantity = Decimal("1")
    unit_price = factory.LazyAttribute(lambda o: o.amount)
    amount = Decimal("49.00")


class UsageRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "metering.UsageRecord"

    customer = factory.SubFactory(CustomerFactory)
    product = "geocode"
    calls = 100
