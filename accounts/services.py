"""Writes for users, customers and API keys. The only way keys are created or changed."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from plans.models import Plan

from .keyformat import key_generate, key_hash, key_is_well_formed
from .models import ApiKey, Customer

MAX_GRACE_DAYS = 7


@dataclass(frozen=True)
class IssuedKey:
    """A key just made; `raw` exists only here, to be shown once and then dropped."""

    key: ApiKey
    raw: str


@dataclass(frozen=True)
class Signup:
    customer: Customer
    issued: IssuedKey


@transaction.atomic
def customer_signup(*, email: str, company: str, password: str, plan: Plan) -> Signup:
    user_model = get_user_model()
    email = user_model.objects.normalize_email(email).strip()
    if user_model.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "An account with this email already exists."})
    user = user_model.objects.create_user(username=email.lower(), email=email, password=password)
    now = timezone.now()
    customer = Customer.objects.create(
        owner=user,
        company=company,
        plan=plan,
        status=Customer.Status.TRIAL if plan.has_trial else Customer.Status.ACTIVE,
        trial_ends_at=now + timedelta(days=plan.trial_days) if plan.has_trial else None,
        created_at=now,
    )
    issued = api_key_issue(customer=customer, name="Default key")
    from .tasks import welcome_email_send

    transaction.on_commit(lambda: welcome_email_send.delay(customer_id=customer.pk))
    return Signup(customer=customer, issued=issued)


@transaction.atomic
def api_key_issue(*, customer: Customer, name: str) -> IssuedKey:
    # Lock the customer row so two concurrent requests cannot both pass the key limit.
    Customer.objects.select_for_update().filter(pk=customer.pk).first()
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the key a name."})
    if customer.api_keys.active().count() >= settings.MAX_ACTIVE_KEYS:
        raise ValidationError(
            {"name": f"You already have {settings.MAX_ACTIVE_KEYS} active keys; revoke one first."}
        )
    raw = key_generate()
    key = ApiKey.objects.create(
        customer=customer, name=name[:60], prefix=raw[:8], key_hash=key_hash(raw), last8=raw[-8:]
    )
    return IssuedKey(key=key, raw=raw)


@transaction.atomic
def api_key_revoke(*, key: ApiKey) -> ApiKey:
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


@transaction.atomic
def api_key_rotate(*, key: ApiKey, grace_days: int) -> IssuedKey:
    """Issue a replacement and let the old key live `grace_days` more (0 ends it now)."""
    if not isinstance(grace_days, int) or not 0 <= grace_days <= MAX_GRACE_DAYS:
        raise ValidationError({"grace_days": f"Choose a grace period from 0 to {MAX_GRACE_DAYS} days."})
    old = ApiKey.objects.select_for_update().get(pk=key.pk)
    if not old.is_active():
        raise ValidationError({"key": "Only an active key can be rotated."})
    if hasattr(old, "rotated_to"):
        raise ValidationError({"key": "This key was already rotated."})
    now = timezone.now()
    old.expires_at = now + timedelta(days=grace_days)
    if grace_days == 0:
        old.revoked_at = now
    old.save(update_fields=["expires_at", "revoked_at"])
    # The replacement does not count against the key limit: the old one is on its way out.
    raw = key_generate()
    new = ApiKey.objects.create(
        customer=old.customer, name=old.name, prefix=raw[:8], key_hash=key_hash(raw),
        last8=raw[-8:], rotated_from=old,
    )
    from .tasks import key_rotated_email_send

    transaction.on_commit(lambda: key_rotated_email_send.delay(key_id=new.pk))
    return IssuedKey(key=new, raw=raw)


def api_key_verify(*, raw: str) -> ApiKey | None:
    """The active key for `raw`, or None. Malformed keys never reach the database."""
    if not key_is_well_formed(raw):
        return None
    key = ApiKey.objects.select_related("customer__plan").filter(key_hash=key_hash(raw)).first()
    if key is None or not key.is_active():
        return None
    return key
