from __future__ import annotations

import pytest
from django.utils import timezone

from metering.models import UsageFlush
from tests.factories import CustomerFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def record():
    return UsageRecordFactory(customer=CustomerFactory(company="Metered Co"), day=timezone.now().date(), calls=321)


@pytest.fixture
def flush(record):
    return UsageFlush.objects.create(flush_id="f-1", customer=record.customer, calls=321)


def test_the_admin_index_names_usage_flushes_in_the_plural(admin_client):
    content = admin_client.get("/admin/").content.decode()
    assert ">Usage flushes</a>" in content
    assert "Usage flushs" not in content


@pytest.mark.parametrize("model", ["usagerecord", "usageflush"])
def test_usage_lists_are_shown_without_an_add_button_or_a_delete_action(admin_client, record, flush, model):
    response = admin_client.get(f"/admin/metering/{model}/")

    assert response.status_code == 200
    content = response.content.decode()
    assert "Metered Co" in content
    assert f"/admin/metering/{model}/add/" not in content
    assert "delete_selected" not in content


@pytest.mark.parametrize("model", ["usagerecord", "usageflush"])
def test_usage_cannot_be_added_changed_or_deleted_from_the_admin(admin_client, record, flush, model):
    pk = record.pk if model == "usagerecord" else flush.pk

    assert admin_client.get(f"/admin/metering/{model}/add/").status_code == 403
    assert admin_client.post(f"/admin/metering/{model}/{pk}/delete/", {"post": "yes"}).status_code == 403
    view = admin_client.get(f"/admin/metering/{model}/{pk}/change/")
    assert view.status_code == 200
    assert 'name="_save"' not in view.content.decode()
    assert admin_client.post(f"/admin/metering/{model}/{pk}/change/", {"calls": "1"}).status_code == 403
    record.refresh_from_db()
    flush.refresh_from_db()
    assert (record.calls, flush.calls) == (321, 321)
