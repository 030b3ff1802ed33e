from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from accounts.keyformat import key_generate, key_hash, key_is_well_formed, key_mask
from accounts.models import ApiKey
from accounts.services import api_key_issue, api_key_revoke, api_key_rotate, api_key_verify

HEX = "0123456789abcdef"


def test_a_key_has_the_documented_shape():
    for live, prefix in ((True, "sk_live_"), (False, "sk_test_")):
        raw = key_generate(live=live)
        assert re.fullmatch(rf"{prefix}[0-9a-f]{{64}}", raw)
        assert key_is_well_formed(raw)


@given(position=st.integers(min_value=8, max_value=71), replacement=st.sampled_from(HEX))
def test_any_one_character_change_fails_the_checksum(position, replacement):
    raw = key_generate(live=True)
    if raw[position] == replacement:
        replacement = HEX[(HEX.index(replacement) + 1) % 16]
    changed = raw[:position] + replacement + raw[position + 1:]
    assert not key_is_well_formed(changed)


@pytest.mark.parametrize("raw", ["", "sk_live_", "sk_prod_" + "0" * 64, "SK_LIVE_" + "0" * 64, None, 42,
                                 "sk_live_" + "0" * 63, "sk_live_" + "0" * 65, "sk_live_" + "Z" * 64])
def test_malformed_keys_are_not_well_formed(raw):
    assert not key_is_well_formed(raw)


def test_the_stored_hash_is_sha256_and_the_mask_shows_the_last_eight():
    raw = key_generate(live=False)
    assert key_hash(raw) == hashlib.sha256(raw.encode()).hexdigest()
    assert key_mask(prefix=raw[:8], last8=raw[-8:]) == f"sk_test_…{raw[-8:]}"


@pytest.mark.django_db
class TestServices:
    def test_issue_stores_only_the_hash_and_gives_every_plan_a_live_key(self, customer, free_customer):
        issued = api_key_issue(customer=customer, name="  Production ")
        row = ApiKey.objects.get(pk=issued.key.pk)
        assert issued.raw.startswith("sk_live_") and row.prefix == "sk_live_"
        assert row.key_hash == key_hash(issued.raw) and row.last8 == issued.raw[-8:]
        assert row.name == "Production"
        assert not any(issued.raw in str(value) for value in ApiKey.objects.filter(pk=row.pk).values().get().values())
        assert api_key_issue(customer=free_customer, name="k").raw.startswith("sk_live_")

    def test_a_customer_holds_at_most_ten_active_keys(self, customer, settings):
        for n in range(settings.MAX_ACTIVE_KEYS):
            api_key_issue(customer=customer, name=f"k{n}")
        with pytest.raises(ValidationError):
            api_key_issue(customer=customer, name="one too many")
        api_key_revoke(key=customer.api_keys.first())
        api_key_issue(customer=customer, name="room again")

    def test_a_blank_name_is_refused(self, customer):
        with pytest.raises(ValidationError):
            api_key_issue(customer=customer, name="   ")

    def test_verify_accepts_only_active_well_formed_known_keys(self, customer):
        issued = api_key_issue(customer=customer, name="k")
        assert api_key_verify(raw=issued.raw).pk == issued.key.pk
        assert api_key_verify(raw=key_generate(live=True)) is None
        assert api_key_verify(raw=issued.raw[:-1] + "x") is None
        api_key_revoke(key=issued.key)
        api_key_revoke(key=issued.key)  # twice is harmless
        assert api_key_verify(raw=issued.raw) is None

    def test_rotate_keeps_the_old_key_for_the_chosen_grace(self, customer, time_machine):
        old = api_key_issue(customer=customer, name="k")
        new = api_key_rotate(key=old.key, grace_days=3)
        assert new.key.name == "k" and new.key.rotated_from_id == old.key.pk
        assert api_key_verify(raw=old.raw) and api_key_verify(raw=new.raw)
        time_machine.move_to(timezone.now() + timedelta(days=3, minutes=1))
        assert api_key_verify(raw=old.raw) is None and api_key_verify(raw=new.raw)

    def test_rotate_with_no_grace_ends_the_old_key_now(self, customer):
        old = api_key_issue(customer=customer, name="k")
        api_key_rotate(key=old.key, grace_days=0)
        assert api_key_verify(raw=old.raw) is None
        assert ApiKey.objects.get(pk=old.key.pk).revoked_at is not None

    @pytest.mark.parametrize("grace", [-1, 8, "3", 2.5, None])
    def test_rotate_refuses_a_grace_outside_0_to_7_days(self, customer, grace):
        old = api_key_issue(customer=customer, name="k")
        with pytest.raises(ValidationError):
            api_key_rotate(key=old.key, grace_days=grace)
        assert api_key_verify(raw=old.raw) is not None

    def test_a_key_is_rotated_once_and_a_revoked_one_never(self, customer):
        old = api_key_issue(customer=customer, name="k")
        api_key_rotate(key=old.key, grace_days=1)
        with pytest.raises(ValidationError):
            api_key_rotate(key=old.key, grace_days=1)
        other = api_key_issue(customer=customer, name="k2")
        api_key_revoke(key=other.key)
        with pytest.raises(ValidationError):
            api_key_rotate(key=other.key, grace_days=1)

    def test_the_nightly_task_stamps_keys_whose_grace_ended(self, customer, time_machine):
        from accounts.tasks import api_keys_expire

        old = api_key_issue(customer=customer, name="k")
        api_key_rotate(key=old.key, grace_days=1)
        assert api_keys_expire.delay().get() == 0
        time_machine.move_to(timezone.now() + timedelta(days=2))
        assert api_keys_expire.delay().get() == 1
        assert ApiKey.objects.get(pk=old.key.pk).revoked_at is not None




def test_a_test_prefixed_key_issued_earlier_keeps_working(customer):
    from rest_framework.test import APIClient

    raw = key_generate(live=False)
    ApiKey.objects.create(customer=customer, name="old", prefix=raw[:8], key_hash=key_hash(raw), last8=raw[-8:])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    response = client.get("/v1/geocode?q=Paris")

    assert response.status_code == 200
    assert response.json()["results"][0]["name"] == "Paris"
