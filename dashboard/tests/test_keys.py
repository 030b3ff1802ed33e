from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_issue, api_key_revoke
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

KEY_IN_PAGE = re.compile(r"sk_(?:live|test)_[0-9a-f]{64}")


@pytest.fixture
def signed_in(client, customer):
    client.force_login(customer.owner)
    return client


def test_the_keys_page_shows_masked_keys_only(signed_in, api_key):
    html = signed_in.get(reverse("portal-keys")).content.decode()

    assert api_key.raw not in html and not KEY_IN_PAGE.search(html)
    assert f"sk_live_…{api_key.raw[-8:]}" in html
    assert "test key" in html and "never" in html and "Active" in html


def test_the_keys_page_shows_last_use_calls_and_status(signed_in, customer):
    used = api_key_issue(customer=customer, name="used").key
    ApiKey.objects.filter(pk=used.pk).update(last_used_at=timezone.now() - timedelta(hours=2), call_count=4321)
    revoked = api_key_revoke(key=api_key_issue(customer=customer, name="gone").key)
    expiring = api_key_issue(customer=customer, name="leaving").key
    ApiKey.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() + timedelta(days=2))

    response = signed_in.get(reverse("portal-keys"))

    statuses = {row.key.name: row.status for row in response.context["rows"]}
    assert statuses == {"used": "active", "gone": "revoked", "leaving": "expiring"}
    html = response.content.decode()
    assert "4,321" in html and "2\xa0hours ago" in html and "Expires " in html
    assert response.context["rows"][-1].key == revoked


def test_creating_a_key_shows_it_once(signed_in, customer):
    response = signed_in.post(reverse("portal-keys"), {"name": "Production"})

    assert response.status_code == 302 and response["Location"] == reverse("portal-keys")
    key = customer.api_keys.get(name="Production")
    first = signed_in.get(reverse("portal-keys")).content.decode()
    raw = KEY_IN_PAGE.search(first).group()
    assert raw.endswith(key.last8) and raw.startswith("sk_live_")
    assert "Key “Production” created." in first
    assert not KEY_IN_PAGE.search(signed_in.get(reverse("portal-keys")).content.decode())


@pytest.mark.parametrize("name, error", [("", "Give the key a name."), ("   ", "Give the key a name."), ("x" * 61, "at most 60")])
def test_a_bad_key_name_is_a_form_error(signed_in, customer, name, error):
    response = signed_in.post(reverse("portal-keys"), {"name": name})

    assert response.status_code == 200
    assert error in str(response.context["form"].errors["name"])
    assert customer.api_keys.count() == 0


def test_the_eleventh_active_key_is_a_form_error(signed_in, customer, settings):
    for n in range(settings.MAX_ACTIVE_KEYS):
        api_key_issue(customer=customer, name=f"k{n}")

    response = signed_in.post(reverse("portal-keys"), {"name": "one too many"})

    assert response.status_code == 200
    assert "revoke one first" in str(response.context["form"].errors["name"])
    assert customer.api_keys.count() == settings.MAX_ACTIVE_KEYS


def test_revoking_asks_first_then_revokes(signed_in, api_key):
    url = reverse("portal-key-revoke", args=[api_key.key.pk])

    confirm = signed_in.get(url)
    assert confirm.status_code == 200 and "Revoke key" in confirm.content.decode()
    api_key.key.refresh_from_db()
    assert api_key.key.revoked_at is None

    response = signed_in.post(url)

    assert response["Location"] == reverse("portal-keys")
    api_key.key.refresh_from_db()
    assert api_key.key.revoked_at is not None
    assert "Revoked" in signed_in.get(reverse("portal-keys")).content.decode()


def test_revoking_twice_is_a_message_not_an_error(signed_in, api_key):
    url = reverse("portal-key-revoke", args=[api_key.key.pk])
    signed_in.post(url)

    response = signed_in.post(url, follow=True)

    assert response.status_code == 200 and "was already revoked" in response.content.decode()


def test_rotating_issues_a_new_key_shown_once_and_keeps_the_old_for_the_grace(
    signed_in, api_key, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("portal-key-rotate", args=[api_key.key.pk]), {"grace_days": "3"})

    assert response["Location"] == reverse("portal-keys")
    old = ApiKey.objects.get(pk=api_key.key.pk)
    new = old.rotated_to
    assert old.revoked_at is None
    assert timedelta(days=2, hours=23) < old.expires_at - timezone.now() <= timedelta(days=3)
    html = signed_in.get(reverse("portal-keys")).content.decode()
    raw = KEY_IN_PAGE.search(html).group()
    assert raw.endswith(new.last8) and raw != api_key.raw
    assert not KEY_IN_PAGE.search(signed_in.get(reverse("portal-keys")).content.decode())
    assert len(mail.outbox) == 1 and raw not in mail.outbox[0].body


def test_rotating_with_no_grace_ends_the_old_key_now(signed_in, api_key):
    signed_in.post(reverse("portal-key-rotate", args=[api_key.key.pk]), {"grace_days": "0"})

    api_key.key.refresh_from_db()
    assert api_key.key.revoked_at is not None


@pytest.mark.parametrize("grace", ["8", "-1", "abc", ""])
def test_a_bad_grace_period_is_a_form_error(signed_in, api_key, grace):
    response = signed_in.post(reverse("portal-key-rotate", args=[api_key.key.pk]), {"grace_days": grace})

    assert response.status_code == 200 and "grace_days" in response.context["form"].errors
    assert ApiKey.objects.count() == 1


def test_rotating_a_revoked_key_is_a_form_error(signed_in, api_key):
    api_key_revoke(key=api_key.key)

    response = signed_in.post(reverse("portal-key-rotate", args=[api_key.key.pk]), {"grace_days": "1"})

    assert response.status_code == 200
    assert "Only an active key can be rotated." in response.content.decode()
    assert ApiKey.objects.count() == 1


def test_rotating_a_key_twice_is_a_form_error(signed_in, api_key):
    url = reverse("portal-key-rotate", args=[api_key.key.pk])
    signed_in.post(url, {"grace_days": "2"})

    response = signed_in.post(url, {"grace_days": "2"})

    assert response.status_code == 200 and "already rotated" in response.content.decode()
    assert ApiKey.objects.count() == 2


@pytest.mark.parametrize("name", ["portal-key-revoke", "portal-key-rotate"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_another_customers_key_is_not_found(signed_in, starter_plan, name, method):
    other = api_key_issue(customer=CustomerFactory(plan=starter_plan), name="theirs").key

    response = getattr(signed_in, method)(reverse(name, args=[other.pk]), {"grace_days": "1"})

    assert response.status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None and other.expires_at is None


def test_a_key_id_beyond_any_row_is_not_found(signed_in):
    response = signed_in.post(f"/portal/keys/{10**30}/revoke/")

    assert response.status_code == 404


def test_another_customers_keys_are_not_listed(signed_in, starter_plan):
    other = api_key_issue(customer=CustomerFactory(plan=starter_plan), name="theirs").key

    html = signed_in.get(reverse("portal-keys")).content.decode()

    assert "theirs" not in html and other.last8 not in html


@pytest.mark.parametrize("name", ["portal-keys", "portal-key-rotate"])
def test_a_post_with_no_fields_is_a_form_error(signed_in, api_key, name):
    url = reverse(name) if name == "portal-keys" else reverse(name, args=[api_key.key.pk])

    response = signed_in.post(url, {})

    assert response.status_code == 200 and response.context["form"].errors
    assert ApiKey.objects.count() == 1


def _geocode(raw: str, times: int) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    for _ in range(times):
        assert client.get("/v1/geocode?q=Paris", HTTP_X_API_KEY=raw).status_code == 200


def test_calls_and_last_use_are_live_before_the_minute_flush(signed_in, api_key):
    ApiKey.objects.filter(pk=api_key.key.pk).update(call_count=100, last_used_at=timezone.now() - timedelta(hours=3))
    _geocode(api_key.raw, 2)

    response = signed_in.get(reverse("portal-keys"))

    row = response.context["table"].rows[0]
    assert (row.calls, row.used_since_flush) == (102, True)
    html = response.content.decode()
    assert "Calls and last use are live." in html and "in the last minute" in html and ">102<" in html


def test_calls_are_labelled_with_their_age_when_redis_cannot_be_read(signed_in, api_key, customer):
    from metering import connection
    from metering.models import UsageFlush

    UsageFlush.objects.create(flush_id="f-1", customer=customer, calls=5, created_at=timezone.now() - timedelta(minutes=2))
    connection.redis_mark_down()

    html = signed_in.get(reverse("portal-keys")).content.decode()

    assert "Calls and last use as of 2\xa0minutes ago" in html


def test_a_rotated_key_is_named_as_replaced_with_its_expiry(signed_in, api_key):
    with time_machine.travel(datetime(2026, 12, 1, 9, 30, tzinfo=dt_timezone.utc), tick=False):
        signed_in.post(reverse("portal-key-rotate", args=[api_key.key.pk]), {"grace_days": "2"})
        html = signed_in.get(reverse("portal-keys")).content.decode()

    old_row = html.split(f'data-key-id="{api_key.key.pk}"')[1].split("</tr>")[0]
    assert "Replaced — expires 3 Dec, 09:30 UTC" in old_row


def test_revoked_keys_sit_behind_a_toggle(signed_in, customer):
    api_key_issue(customer=customer, name="live one")
    api_key_revoke(key=api_key_issue(customer=customer, name="old one").key)

    html = signed_in.get(reverse("portal-keys")).content.decode()

    visible, hidden = html.split('<details class="revoked-keys" id="revoked-keys">')
    assert "live one" in visible and "old one" not in visible
    assert "<summary>Revoked keys (1)</summary>" in hidden and "old one" in hidden
