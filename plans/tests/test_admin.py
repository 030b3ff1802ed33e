from __future__ import annotations

import pytest

from plans.models import Plan
from tests.factories import CustomerFactory, seeded_plan

pytestmark = pytest.mark.django_db


def _unused_plan() -> Plan:
    return Plan.objects.create(slug="legacy", name="Legacy", price=10, included_calls=10, rate_per_minute=1,
                               entitlements=["geocode"], is_public=False)


def test_a_plan_in_use_shows_why_it_cannot_be_deleted_and_offers_no_delete_link(admin_client):
    plan = seeded_plan("pro")
    CustomerFactory(plan=plan)
    CustomerFactory(plan=plan)

    response = admin_client.get(f"/admin/plans/plan/{plan.pk}/change/")

    assert response.status_code == 200
    content = response.content.decode()
    assert "Yes (2 customers, 1 set of terms). A plan in use cannot be deleted" in content
    assert "Untick “Is public” to hide it" in content
    assert f"/admin/plans/plan/{plan.pk}/delete/" not in content


def test_deleting_a_plan_in_use_is_refused_and_the_plan_stays(admin_client):
    plan = seeded_plan("pro")
    CustomerFactory(plan=plan)

    assert admin_client.get(f"/admin/plans/plan/{plan.pk}/delete/").status_code == 403
    assert admin_client.post(f"/admin/plans/plan/{plan.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Plan.objects.filter(pk=plan.pk).exists()


def test_the_bulk_delete_action_on_a_plan_in_use_explains_instead_of_failing(admin_client):
    plan = seeded_plan("pro")
    CustomerFactory(plan=plan)

    response = admin_client.post("/admin/plans/plan/", {"action": "delete_selected", "_selected_action": [plan.pk]})

    assert response.status_code == 200
    content = response.content.decode()
    assert "would require deleting the following protected related objects" in content
    assert "<li>Professional: 1 customer, 1 set of terms. A plan in use cannot be deleted" in content
    assert "doesn&#x27;t have permission" not in content
    assert Plan.objects.filter(pk=plan.pk).exists()


def test_a_plan_nothing_refers_to_can_be_deleted(admin_client):
    plan = _unused_plan()

    page = admin_client.get(f"/admin/plans/plan/{plan.pk}/change/").content.decode()
    assert "No: nothing refers to this plan, so it can be deleted." in page
    response = admin_client.post(f"/admin/plans/plan/{plan.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Plan.objects.filter(pk=plan.pk).exists()


def test_the_plan_list_counts_each_plans_customers(admin_client):
    plan = seeded_plan("starter")
    CustomerFactory.create_batch(3, plan=plan)

    content = admin_client.get("/admin/plans/plan/").content.decode()

    start = content.index(">Starter</a>")
    assert '<td class="field-customer_count">3</td>' in content[start:content.index("</tr>", start)]
