"""Refusals a plan change would lift say where to upgrade, and to which plan."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from metering.models import UsageRecord
from plans.models import Plan
from tests.factories import CustomerFactory, seeded_plan

pytestmark = pytest.mark.django_db

NOT_ENTITLED = "Your plan does not include this endpoint"
QUOTA = "Monthly quota exceeded. Upgrade your plan."


def upgrade_url() -> str:
    return settings.SITE_URL.rstrip("/") + "/portal/billing/plan/"


def free_key() -> str:
    return api_key_issue(customer=CustomerFactory(plan=seeded_plan("free")), name="k").raw


def image_call(raw: str):
    return APIClient().post("/v1/image/analyze", HTTP_X_API_KEY=raw)


def _public_plan(slug: str, *, price: str, included_calls: int, hard_cap: bool, entitlements: list[str]) -> Plan:
    return Plan.objects.create(
        slug=slug, name=slug.title(), price=Decimal(price), included_calls=included_calls, hard_cap=hard_cap,
        rate_per_minute=10, entitlements=entitlements, sort_order=1,
    )


def _use_up_quota(customer, calls: int) -> None:
    UsageRecord.objects.create(customer=customer, product="geocode", day=timezone.now().date(), calls=calls)


def test_a_product_outside_the_plan_names_the_cheapest_plan_that_includes_it():
    for plan in ("starter", "pro", "enterprise"):
        seeded_plan(plan)
    response = image_call(free_key())
    assert response.status_code == 403
    assert response.json() == {
        "error": NOT_ENTITLED, "code": "not_entitled", "upgrade_url": upgrade_url(),
        "upgrade_plan": {"slug": "starter", "name": "Starter", "price": "49.00"},
    }


def test_a_new_cheaper_plan_is_suggested_as_soon_as_it_is_saved():
    raw = free_key()
    assert image_call(raw).json()["upgrade_plan"]["slug"] == "starter"
    _public_plan("pixels", price="9", included_calls=2_000, hard_cap=True, entitlements=["image"])
    assert image_call(raw).json()["upgrade_plan"] == {"slug": "pixels", "name": "Pixels", "price": "9.00"}


def test_hidden_plans_are_never_suggested_and_none_left_says_null():
    raw = free_key()
    for plan in Plan.objects.exclude(slug="free"):
        plan.is_public = False
        plan.save()
    assert image_call(raw).json() == {
        "error": NOT_ENTITLED, "code": "not_entitled", "upgrade_url": upgrade_url(), "upgrade_plan": None,
    }


def test_a_flood_of_refused_calls_runs_no_query(django_assert_num_queries):
    raw = free_key()
    assert image_call(raw).status_code == 403  # loads the key config and the plan list once
    with django_assert_num_queries(0):
        for _ in range(20):
            assert image_call(raw).json()["upgrade_plan"]["slug"] == "starter"


def test_the_quota_refusal_names_the_cheapest_plan_with_more_calls(free_customer, free_plan):
    raw = api_key_issue(customer=free_customer, name="k").raw
    _use_up_quota(free_customer, free_plan.included_calls)
    response = APIClient().get("/v1/geocode?q=Oslo", HTTP_X_API_KEY=raw)
    assert response.status_code == 429
    assert response.json() == {
        "error": QUOTA, "code": "quota_exceeded", "upgrade_url": upgrade_url(),
        "upgrade_plan": {"slug": "starter", "name": "Starter", "price": "49.00"},
    }
    assert int(response["Retry-After"]) > 0


def test_the_quota_upgrade_skips_plans_no_bigger_or_without_the_product(free_customer, free_plan):
    _public_plan("tiny", price="5", included_calls=free_plan.included_calls, hard_cap=True, entitlements=["geocode"])
    _public_plan("imagery", price="9", included_calls=20_000, hard_cap=True, entitlements=["image"])
    _public_plan("plus", price="19", included_calls=10_000, hard_cap=True, entitlements=["geocode", "text"])
    raw = api_key_issue(customer=free_customer, name="k").raw
    _use_up_quota(free_customer, free_plan.included_calls)
    body = APIClient().get("/v1/geocode?q=Oslo", HTTP_X_API_KEY=raw).json()
    assert body["upgrade_plan"] == {"slug": "plus", "name": "Plus", "price": "19.00"}


def test_other_refusals_keep_the_plain_error_shape(free_customer, free_plan):
    raw = api_key_issue(customer=free_customer, name="k").raw
    for _ in range(free_plan.rate_per_minute):
        APIClient().get("/v1/geocode?q=Rome", HTTP_X_API_KEY=raw)
    response = APIClient().get("/v1/geocode?q=Rome", HTTP_X_API_KEY=raw)
    assert response.json() == {"error": "Rate limit exceeded", "code": "rate_limited"}


@pytest.mark.slow
def test_with_postgres_down_the_refusal_stands_without_a_suggestion():
    """A worker that holds the key's config but never read the plans still answers 403, not 503."""
    import json
    import urllib.error
    import urllib.request

    from tests.servers import Gunicorn, PostgresServer, manage

    seed = ("from accounts.services import api_key_issue\nfrom tests.factories import CustomerFactory, seeded_plan\n"
            "print('key:', api_key_issue(customer=CustomerFactory(plan=seeded_plan('free')), name='k').raw)")
    with PostgresServer() as postgres:
        output = manage("shell", "-c", seed, env={"DATABASE_URL": postgres.url})
        raw = next(line for line in output.splitlines() if line.startswith("key:")).split()[1]
        with Gunicorn(workers=1, threads=1, env={"DATABASE_URL": postgres.url}) as server:
            assert urllib.request.urlopen(urllib.request.Request(
                f"{server.url}/v1/geocode?q=Paris", headers={"X-API-Key": raw}), timeout=30).status == 200
            postgres.stop()
            with pytest.raises(urllib.error.HTTPError, match="403") as refused:
                urllib.request.urlopen(urllib.request.Request(
                    f"{server.url}/v1/image/analyze", method="POST", headers={"X-API-Key": raw}), timeout=30)
            body = json.loads(refused.value.read())
    assert (body["code"], body["upgrade_plan"]) == ("not_entitled", None)
