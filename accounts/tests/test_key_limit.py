"""Keys in their rotation grace period still work, so they count toward the active-key limit."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.models import ApiKey
from accounts.services import api_key_issue, api_key_rotate

pytestmark = pytest.mark.django_db


def _usable(customer) -> int:
    return ApiKey.objects.filter(customer=customer).active().count()


def test_rotating_the_newest_key_again_and_again_never_passes_ten_usable_keys(customer, settings):
    newest = api_key_issue(customer=customer, name="prod").key
    refused = 0
    for _ in range(20):
        try:
            newest = api_key_rotate(key=newest, grace_days=7).key
        except ValidationError as exc:
            refused += 1
            assert "keys in a grace period count" in exc.message_dict["grace_days"][0]
        assert _usable(customer) <= settings.MAX_ACTIVE_KEYS

    assert _usable(customer) == settings.MAX_ACTIVE_KEYS and refused == 20 - (settings.MAX_ACTIVE_KEYS - 1)


def test_at_the_limit_a_rotation_without_grace_still_replaces_the_key(customer, settings):
    keys = [api_key_issue(customer=customer, name=f"k{n}").key for n in range(settings.MAX_ACTIVE_KEYS)]

    with pytest.raises(ValidationError, match="rotate with no grace period"):
        api_key_rotate(key=keys[0], grace_days=1)
    new = api_key_rotate(key=keys[0], grace_days=0)

    assert new.key.rotated_from_id == keys[0].pk and _usable(customer) == settings.MAX_ACTIVE_KEYS


def test_a_key_in_its_grace_period_blocks_a_new_key_at_the_limit(customer, settings):
    keys = [api_key_issue(customer=customer, name=f"k{n}").key for n in range(settings.MAX_ACTIVE_KEYS - 1)]
    api_key_rotate(key=keys[0], grace_days=3)

    with pytest.raises(ValidationError, match="active keys"):
        api_key_issue(customer=customer, name="one more")


def test_the_portal_shows_the_refused_rotation_as_a_form_error(client, customer, settings):
    keys = [api_key_issue(customer=customer, name=f"k{n}").key for n in range(settings.MAX_ACTIVE_KEYS)]
    client.force_login(customer.owner)

    response = client.post(reverse("portal-key-rotate", args=[keys[0].pk]), {"grace_days": "3"})

    assert response.status_code == 200
    assert "keys in a grace period count" in response.content.decode()
    assert ApiKey.objects.filter(customer=customer).count() == settings.MAX_ACTIVE_KEYS
