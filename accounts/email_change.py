"""Changing the sign-in email through a signed link sent to the new address (README "Customer portal").

Nothing is stored: the link carries the user, the new address and the address it replaces, signed
with the site's secret and stamped with its time. Holding the replaced address in it makes the
link single-use: once the change is made the user's email no longer matches, so a replay is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import outbox

from . import tasks
from .services import user_email_change

SALT = "accounts.email-change"
LINK_HOURS = 24


@dataclass(frozen=True)
class EmailChange:
    user: AbstractBaseUser
    old: str
    new: str


def email_taken(*, email: str, user: AbstractBaseUser | None = None) -> bool:
    user_model = get_user_model()
    taken = user_model.objects.filter(Q(email__iexact=email) | Q(username=email.lower()))
    return taken.exclude(pk=getattr(user, "pk", None)).exists()


def email_change_token(*, user: AbstractBaseUser, email: str) -> str:
    return signing.dumps({"u": user.pk, "old": user.email, "new": email}, salt=SALT)


def email_change_request(*, user: AbstractBaseUser, email: str) -> str:
    """Send the confirmation link to `email` and tell the current address; nothing changes yet.

    Returns the normalized new address."""
    email = get_user_model().objects.normalize_email(email).strip()
    if email == user.email:
        raise ValidationError({"email": ValidationError("That is already your email.", code="unchanged")})
    if email_taken(email=email, user=user):
        raise ValidationError({"email": ValidationError("An account with this email already exists.", code="taken")})
    # The time makes each request its own once-only email: asking twice sends twice.
    requested_at = timezone.now().isoformat()
    outbox.enqueue(tasks.email_change_confirm_email_send, user_id=user.pk, email=email, requested_at=requested_at)
    outbox.enqueue(tasks.email_change_requested_email_send, user_id=user.pk, email=email, requested_at=requested_at)
    return email


def email_change_read(*, token: str) -> EmailChange:
    """The change a link asks for, if it is still good; ValidationError (code expired, invalid or used) if not."""
    try:
        data = signing.loads(token, salt=SALT, max_age=LINK_HOURS * 3600)
    except signing.SignatureExpired:
        raise ValidationError(
            f"This link has expired (links work for {LINK_HOURS} hours). Ask for a new one on your account page.",
            code="expired") from None
    except signing.BadSignature:
        raise ValidationError("This link is not valid. Ask for a new one on your account page.",
                              code="invalid") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), t) for k, t in (("u", int), ("old", str), ("new", str))):
        raise ValidationError("This link is not valid. Ask for a new one on your account page.", code="invalid")
    user = get_user_model().objects.filter(pk=data["u"], is_active=True).first()
    if user is None:
        raise ValidationError("This link is not valid. Ask for a new one on your account page.", code="invalid")
    if user.email != data["old"]:
        raise ValidationError("This link was already used, or the email changed since it was sent.", code="used")
    return EmailChange(user=user, old=data["old"], new=data["new"])


@transaction.atomic
def email_change_confirm(*, token: str) -> EmailChange:
    """Make the change a link asks for, once, and tell the address it replaces."""
    change = email_change_read(token=token)
    # Locked and read again: of two clicks at once, the second finds the email changed and is refused.
    user = get_user_model().objects.select_for_update().get(pk=change.user.pk)
    if user.email != change.old:
        raise ValidationError("This link was already used, or the email changed since it was sent.", code="used")
    if email_taken(email=change.new, user=user):
        raise ValidationError("Another account took this email since the link was sent.", code="taken")
    user_email_change(user=user, email=change.new)
    outbox.enqueue(tasks.email_changed_email_send, user_id=user.pk, old_email=change.old,
                   changed_at=timezone.now().isoformat())
    return EmailChange(user=user, old=change.old, new=user.email)


def password_changed_notify(*, user: AbstractBaseUser) -> None:
    """A password changed (account page or reset link): tell the account's address."""
    outbox.enqueue(tasks.password_changed_email_send, user_id=user.pk, changed_at=timezone.now().isoformat())
