"""Sell an API the company already runs: an upstream product on the named plans (README "Sell your own API").

Lives in billing, not plans, because the plans' current customers get the product at once
(billing.subscriptions.plan_product_added), as they do when staff tick it in the admin.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from billing.subscriptions import plan_product_added
from plans.models import Plan
from plans.services import product_create


class Command(BaseCommand):
    help = ("Add an upstream product (your own HTTP service, sold at /v1/<slug>/) to plans; prints its "
            "service token and signing secret once.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug", help="The /v1/<slug>/ segment, e.g. routing")
        parser.add_argument("--name", required=True, help="Display name, e.g. \"Routing\"")
        parser.add_argument("--upstream", required=True, help="Base URL calls go to, e.g. http://10.0.0.5:8080/api")
        parser.add_argument("--plans", default="", help="Plan slugs, comma separated, e.g. starter,pro")
        parser.add_argument("--timeout", type=int, default=30, help="Seconds, 1 to 100 (default 30)")
        parser.add_argument("--methods", default="GET,POST", help="Allowed HTTP methods (default GET,POST)")
        parser.add_argument("--description", default="")
        parser.add_argument("--body-limit", type=int, default=None, help="Largest request body in bytes")
        parser.add_argument("--health-path", default="/", help="Path “check upstream” GETs (default /)")

    def handle(self, *args, slug: str, name: str, upstream: str, plans: str, timeout: int, methods: str,
               description: str, body_limit: int | None, health_path: str, **options) -> None:
        plan_rows = _plans(plans)
        try:
            with transaction.atomic():
                product, token, secret = product_create(
                    slug=slug, name=name, upstream_url=upstream, description=description, methods=methods,
                    timeout_seconds=timeout, body_limit_bytes=body_limit, health_path=health_path, plans=plan_rows,
                )
                given = {plan: plan_product_added(plan=plan, product=product) for plan in plan_rows}
        except ValidationError as error:
            raise CommandError(_problems(error)) from error
        on_sale = ", ".join(plan.name for plan in plan_rows) or "no plan yet (add it to plans in the admin)"
        self.stdout.write(f"Added {product.name} at /v1/{product.slug}/ -> {product.upstream_url}")
        self.stdout.write(f"On sale in: {on_sale}")
        for plan, count in given.items():
            self.stdout.write(f"  {plan.name}: {count} existing customer(s) can call it now")
        self.stdout.write(f"Service token:  {token}")
        self.stdout.write(f"Signing secret: {secret}")
        self.stdout.write("Copy both now: they are not shown again (rotate them in the admin).")


def _plans(listed: str) -> list[Plan]:
    slugs = [s.strip() for s in listed.split(",") if s.strip()]
    found = {plan.slug: plan for plan in Plan.objects.filter(slug__in=slugs)}
    unknown = [s for s in slugs if s not in found]
    if unknown:
        known = ", ".join(Plan.objects.order_by("sort_order", "price").values_list("slug", flat=True))
        raise CommandError(f"No such plan: {', '.join(unknown)} (plans: {known}).")
    return [found[s] for s in dict.fromkeys(slugs)]


def _problems(error: ValidationError) -> str:
    flags = {"upstream_url": "--upstream", "timeout_seconds": "--timeout", "methods": "--methods",
             "body_limit_bytes": "--body-limit", "health_path": "--health-path", "slug": "slug", "name": "--name"}
    if not hasattr(error, "error_dict"):
        return " ".join(error.messages)
    return "; ".join(f"{flags.get(field, field)}: {' '.join(messages)}"
                     for field, messages in error.message_dict.items())
