"""Writes for users, customers and API keys. The only way keys are created or changed."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

import outbox
from plans.models import Plan

from .events import api_key_rotated
from .keyformat import key_generate, key_hash, key_is_well_formed
from .models import ApiKey, Customer, TrialClaim
from .tasks import key_rotated_email_send, welcome_email_send
from .text import single_line

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
    # The person asked for a plan with a trial but had one already: the account starts on the
    # default plan instead (see customer_signup).
    trial_used_before: bool = False


@transaction.atomic
def customer_signup(*, email: str, company: str, password: str, plan: Plan) -> Signup:
    """Create the user, the customer and its first key.

    A plan with a trial starts it when the person never had one (trial_claim). Someone who had
    one (another account of the same mailbox, even a deleted one) starts on the default plan,
    active, and moves to the paid plan once a card is on file: with no trial and no card, a paid
    plan's calls would have nothing to charge them to, which a new account must not get.
    """
    user_model = get_user_model()
    email = user_model.objects.normalize_email(email).strip()
    company = single_line(company)
    if not company:
        raise ValidationError({"company": "Tell us the name of your company or project."})
    if user_model.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "An account with this email already exists."})
    user = user_model.objects.create_user(username=email.lower(), email=email, password=password)
    now = timezone.now()
    claim = trial_claim(customer=None, email=email) if plan.has_trial else None
    held = plan if claim or not plan.has_trial else (Plan.objects.filter(is_default=True).first() or plan)
    customer = Customer.objects.create(
        owner=user,
        company=company,
        plan=held,
        status=Customer.Status.TRIAL if claim else Customer.Status.ACTIVE,
        trial_started_at=now if claim else None,
        trial_ends_at=now + timedelta(days=plan.trial_days) if claim else None,
        created_at=now,
    )
    if claim:
        claim.customer = customer
        claim.save(update_fields=["customer"])
    issued = api_key_issue(customer=customer, name="Default key")

    # Through the outbox: a broker outage must not fail a signup that already committed.
    outbox.enqueue(welcome_email_send, customer_id=customer.pk)
    return Signup(customer=customer, issued=issued, trial_used_before=plan.has_trial and claim is None)


def trial_taken(*, customer: Customer) -> bool:
    """Has this person had a free trial: on this account, or on any account of its mailbox?"""
    if customer.trial_ends_at is not None:
        return True
    mailbox = Q(kind=TrialClaim.Kind.EMAIL, value=TrialClaim.email_value(customer.email))
    return TrialClaim.objects.filter(Q(customer=customer) | mailbox).exists()


def trial_claim(*, customer: Customer | None, email: str) -> TrialClaim | None:
    """Take the mailbox's one trial; None when it was taken before (by any account, ever).

    The unique (kind, value) row decides: of two signups racing for one mailbox, one inserts
    and the other waits for its commit and is refused.
    """
    try:
        with transaction.atomic():  # a savepoint: a refused insert leaves the caller's work intact
            return TrialClaim.objects.create(
                kind=TrialClaim.Kind.EMAIL, value=TrialClaim.email_value(email), customer=customer,
            )
    except IntegrityError:
        return None


def trial_card_claim(*, customer: Customer, fingerprint: str) -> TrialClaim:
    """The trial claim on a card: the account that first had a trial with it, else now `customer`."""
    try:
        with transaction.atomic():
            claim, _ = TrialClaim.objects.get_or_create(
                kind=TrialClaim.Kind.CARD, value=fingerprint, defaults={"customer": customer},
            )
            return claim
    except IntegrityError:  # inserted by a concurrent save of the same card
        return TrialClaim.objects.get(kind=TrialClaim.Kind.CARD, value=fingerprint)


@transaction.atomic
def api_key_issue(*, customer: Customer, name: str, test: bool = False) -> IssuedKey:
    """A new key; `test` makes a test-mode key (README "The metered API": never billed)."""
    # Lock the customer row so two concurrent requests cannot both pass the key limit.
    Customer.objects.select_for_update().filter(pk=customer.pk).first()
    name = single_line(name or "")
    if not name:
        raise ValidationError({"name": "Give the key a name."})
    if customer.api_keys.active().count() >= settings.MAX_ACTIVE_KEYS:
        raise ValidationError(
            {"name": f"You already have {settings.MAX_ACTIVE_KEYS} active keys; revoke one first."}
        )
    raw = key_generate(live=not test)
    key = ApiKey.objects.create(
        customer=customer, name=name[:60], prefix=raw[:8], key_hash=key_hash(raw), last8=raw[-8:], is_test=test,
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
    Customer.objects.select_for_update().filter(pk=key.customer_id).first()  # as in api_key_issue
    old = ApiKey.objects.select_for_update().get(pk=key.pk)
    if not old.is_active():
        raise ValidationError({"key": "Only an active key can be rotated."})
    if hasattr(old, "rotated_to"):
        raise ValidationError({"key": "This key was already rotated."})
    _rotation_fits_key_limit(customer_id=old.customer_id, grace_days=grace_days)
    now = timezone.now()
    name = single_line(old.name) or "Rotated key"
    old.expires_at = now + timedelta(days=grace_days)
    if grace_days == 0:
        old.revoked_at = now
    old.name = _rotated_name(customer_id=old.customer_id, name=name, now=now, exclude_id=old.pk)
    old.save(update_fields=["expires_at", "revoked_at", "name"])
    raw = key_generate(live=not old.is_test)
    new = ApiKey.objects.create(
        customer=old.customer, name=name, prefix=raw[:8], key_hash=key_hash(raw),
        last8=raw[-8:], rotated_from=old, is_test=old.is_test,
    )

    outbox.enqueue(key_rotated_email_send, key_id=new.pk)
    transaction.on_commit(lambda: api_key_rotated.send(sender=ApiKey, key=new), robust=True)
    return IssuedKey(key=new, raw=raw)


ROTATED_SUFFIX = re.compile(r" \(rotated [^()]*\)$")
NAME_MAX = ApiKey._meta.get_field("name").max_length


def _rotated_name(*, customer_id: int, name: str, now, exclude_id: int) -> str:
    """The retired key's new name: "Default key (rotated 4 Dec)", then "(rotated 4 Dec, 2)" and so
    on, so the replacement keeps the plain name and no two of the customer's keys share one."""
    base = ROTATED_SUFFIX.sub("", name) or name
    taken = set(ApiKey.objects.filter(customer_id=customer_id).exclude(pk=exclude_id).values_list("name", flat=True))
    taken.add(name)  # the replacement takes the plain name
    day = f"{now.day} {now:%b}"
    for n in itertools.count(1):
        suffix = f" (rotated {day})" if n == 1 else f" (rotated {day}, {n})"
        candidate = base[:NAME_MAX - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable")


def _rotation_fits_key_limit(*, customer_id: int, grace_days: int) -> None:
    """A key in its grace period still works, so it counts: with a grace the rotation adds one."""
    in_use = ApiKey.objects.filter(customer_id=customer_id).active().count()
    if grace_days > 0 and in_use >= settings.MAX_ACTIVE_KEYS:
        raise ValidationError({"grace_days": (
            f"You have {in_use} keys in use (keys in a grace period count) and the limit is "
            f"{settings.MAX_ACTIVE_KEYS}: rotate with no grace period, or revoke a key first."
        )})


def api_key_verify(*, raw: str) -> ApiKey | None:
    """The active key for `raw`, or None. Malformed keys never reach the database."""
    if not key_is_well_formed(raw):
        return None
    key = ApiKey.objects.select_related("customer__plan").filter(key_hash=key_hash(raw)).first()
    if key is None or not key.is_active():
        return None
    return key


@transaction.atomic
def user_email_change(*, user: AbstractBaseUser, email: str) -> AbstractBaseUser:
    """The sign-in name is the lowercased email, so both change together."""
    user_model = get_user_model()
    email = user_model.objects.normalize_email(email).strip()
    taken = user_model.objects.filter(email__iexact=email) | user_model.objects.filter(username=email.lower())
    if taken.exclude(pk=user.pk).exists():
        raise ValidationError({"email": "An account with this email already exists."})
    user.email, user.username = email, email.lower()
    user.save(update_fields=["email", "username"])
    return user


@transaction.atomic
def user_deactivate(*, user: AbstractBaseUser) -> AbstractBaseUser:
    """No more sign-ins; the user row stays so the customer's invoices keep their owner."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    return user
