"""Keys keep unique names after rotation (README "The metered API")."""
from __future__ import annotations

import pytest

from accounts.services import api_key_issue, api_key_rotate
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_rotating_twice_gives_every_key_its_own_name(time_machine):
    time_machine.move_to("2025-12-04 10:00:00+00:00")
    customer = CustomerFactory()
    first = api_key_issue(customer=customer, name="Default key").key
    second = api_key_rotate(key=first, grace_days=1).key
    first.refresh_from_db()
    assert (first.name, second.name) == ("Default key (rotated 4 Dec)", "Default key")
    third = api_key_rotate(key=second, grace_days=0).key
    second.refresh_from_db()
    assert (second.name, third.name) == ("Default key (rotated 4 Dec, 2)", "Default key")
    names = list(customer.api_keys.values_list("name", flat=True))
    assert len(names) == len(set(names)) == 3


def test_a_rotated_test_key_stays_a_test_key_and_a_long_name_keeps_its_suffix():
    customer = CustomerFactory()
    old = api_key_issue(customer=customer, name="x" * 60, test=True).key
    new = api_key_rotate(key=old, grace_days=0)
    old.refresh_from_db()
    assert new.raw.startswith("sk_test_") and new.key.is_test
    assert len(old.name) == 60 and old.name.endswith(")") and "(rotated " in old.name
