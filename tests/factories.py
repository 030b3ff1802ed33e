from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from accounts.models import Customer
from plans.models import Plan


def seeded_plan(slug: str) -> Plan:
    """One of the DESIGN §3 plans, as the data migration writes it (transactional tests flush it)."""
    from importlib import import_module

    rows = {row["slug"]: row for row in import_module("plans.migrations.0002_seed_plans").PLANS}
    values = dict(rows[slug])
    values.pop("slug")
    values["price"] = Decimal(values["price"])
    values["overage_price"] = Decimal(values["overage_price"])
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
