"""Demo data for `make run`: a staff login and a few dozen customers with usage history.

Idempotent: running it again changes nothing but the staff password (reset to the known one).
"""
from __future__ import annotations

import os
import random
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import Customer
from accounts.services import api_key_issue
from metering.models import UsageRecord
from plans.models import Plan

COMPANIES = [
    "Acme Logistics", "Bluefin Travel", "Cobalt Insurance", "Dune Analytics", "Evergreen Foods",
    "Fjord Maps", "Granite Realty", "Harbor Health", "Indigo Media", "Juniper Retail", "Kestrel Drones",
    "Lumen Energy", "Meridian Bank", "Nimbus Weather", "Orchid Fashion", "Pioneer Freight",
    "Quartz Security", "Redwood Legal", "Sable Games", "Tidal Shipping", "Umber Coffee",
    "Vertex Robotics", "Willow Schools", "Xenon Labs", "Yarrow Farms", "Zephyr Airlines",
    "Atlas Couriers", "Beacon News", "Cinder Studios", "Delta Parking",
]


class Command(BaseCommand):
    help = "Create the demo staff account and demo customers (idempotent)."

    def handle(self, *args, **options) -> None:
        email = os.environ.get("DEMO_ADMIN_EMAIL", "admin@tollbooth.local")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "tollbooth-demo")
        self._staff(email, password)
        created = self._customers()
        self.stdout.write(self.style.SUCCESS(
            f"Demo data ready ({created} new customers). Staff login: {email} / {password} "
            f"at /admin/ (set DEMO_ADMIN_PASSWORD to choose another)."
        ))

    def _staff(self, email: str, password: str) -> None:
        user, _ = get_user_model().objects.get_or_create(username=email, defaults={"email": email})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()

    @transaction.atomic
    def _customers(self) -> int:
        rng = random.Random(42)
        plans = list(Plan.objects.filter(is_public=True).order_by("sort_order"))
        statuses = [Customer.Status.ACTIVE] * 6 + [Customer.Status.TRIAL] * 2 + [
            Customer.Status.PAST_DUE, Customer.Status.CANCELLED]
        created = 0
        for n, company in enumerate(COMPANIES):
            email = f"demo{n + 1}@example.com"
            if get_user_model().objects.filter(username=email).exists():
                continue
            plan = plans[min(len(plans) - 1, int(rng.random() ** 1.6 * len(plans)))]
            status = rng.choice(statuses) if plan.is_paid else Customer.Status.ACTIVE
            self._customer(rng, email, company, plan, status)
            created += 1
        return created

    def _customer(self, rng, email, company, plan, status) -> None:
        now = timezone.now()
        user = get_user_model().objects.create_user(username=email, email=email, password=None)
        joined = now - timedelta(days=rng.randint(3, 200))
        customer = Customer.objects.create(
            owner=user, company=company, plan=plan, status=status, created_at=joined,
            trial_ends_at=now + timedelta(days=rng.randint(1, plan.trial_days)) if status == "trial" else None,
            past_due_since=now - timedelta(days=rng.randint(1, 10)) if status == "past_due" else None,
        )
        key = api_key_issue(customer=customer, name="Production").key  # raw key dropped on purpose
        self._usage(rng, customer, key, plan, joined)

    def _usage(self, rng, customer, key, plan, joined) -> None:
        today = timezone.now().date()
        daily = plan.included_calls / 30 * rng.uniform(0.2, 1.3)
        rows = []
        for back in range(30):
            day = today - timedelta(days=back)
            if day < joined.date():
                break
            for product in plan.entitlements:
                calls = int(daily * rng.uniform(0.5, 1.5) / len(plan.entitlements))
                if calls:
                    rows.append(UsageRecord(customer=customer, api_key=key, product=product, day=day, calls=calls))
        UsageRecord.objects.bulk_create(rows)
