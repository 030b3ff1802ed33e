"""Teams (README "Teams"): invitations by signed link, roles, removal, and the last-owner rule.

An account's members are `Membership` rows; the customer's `owner` is its primary contact (the
address emails and invoices go to) and is always one of its owners: when that person leaves, is
removed or stops being an owner, the contact moves to another owner. Every change is made with
the customer row locked, so two owners acting at once cannot both leave, or demote each other,
and leave the account with none.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import outbox

from . import tasks
from .models import Customer, Invitation, Membership

SALT = "accounts.team-invite"
INVITE_DAYS = 7
BIGINT_MAX = 2**63 - 1
Role = Membership.Role

LINK_INVALID = "This invitation link is not valid. Ask the account's owner to invite you again."


@dataclass(frozen=True)
class Joined:
    membership: Membership
    user: AbstractBaseUser


def _error(message: str, code: str, field: str | None = None) -> ValidationError:
    error = ValidationError(message, code=code)
    return ValidationError({field: error}) if field else error


def _customer_lock(customer: Customer) -> Customer:
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    # Rows bulk-inserted without Customer.save have no seat for their contact yet: give it one.
    Membership.objects.get_or_create(user_id=customer.owner_id, defaults={"customer": customer, "role": Role.OWNER})
    return customer


def _owner_check(*, customer: Customer, by: AbstractBaseUser) -> None:
    """Services refuse what the portal would refuse: only an owner of this account manages it."""
    if not Membership.objects.filter(customer=customer, user=by, role=Role.OWNER).exists():
        raise _error("Only an owner of this account can manage its team.", "not_owner")


def _role_check(role: str) -> str:
    if role not in Role.values:
        raise _error("Choose owner, developer or billing.", "invalid_role")
    return role


# --- invitations ---

def invitation_token(*, invitation: Invitation) -> str:
    """The signed id the link carries: only we can make one, and it names nothing but the row."""
    return signing.dumps({"i": invitation.pk}, salt=SALT)


@transaction.atomic
def team_invite(*, customer: Customer, email: str, role: str, by: AbstractBaseUser) -> Invitation:
    """Invite `email` as `role`; the link (valid INVITE_DAYS days, once) is emailed through the outbox."""
    customer = _customer_lock(customer)
    _owner_check(customer=customer, by=by)
    role = _role_check(role)
    email = get_user_model().objects.normalize_email(email).strip()
    if Membership.objects.filter(customer=customer, user__email__iexact=email).exists():
        raise _error(f"{email} is already a member of this account.", "member", "email")
    now = timezone.now()
    pending = Invitation.objects.filter(customer=customer, email__iexact=email, accepted_at__isnull=True,
                                        revoked_at__isnull=True)
    if pending.filter(expires_at__gt=now).exists():
        raise _error(f"{email} is already invited. Revoke that invitation to send a new one.", "invited", "email")
    pending.update(revoked_at=now)  # an expired invitation gives way to the new one
    invitation = Invitation.objects.create(customer=customer, email=email, role=role, invited_by=by,
                                           created_at=now, expires_at=now + timedelta(days=INVITE_DAYS))
    outbox.enqueue(tasks.team_invite_email_send, invitation_id=invitation.pk)
    return invitation


@transaction.atomic
def invitation_revoke(*, customer: Customer, invitation_id: int, by: AbstractBaseUser) -> Invitation:
    customer = _customer_lock(customer)
    _owner_check(customer=customer, by=by)
    rows = Invitation.objects.filter(customer=customer, pk=invitation_id)
    invitation = rows.first() if 0 < invitation_id <= BIGINT_MAX else None
    if invitation is None:
        raise _error("There is no such invitation.", "unknown_invitation")
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
    return invitation


def invitation_read(*, token: str, lock: bool = False) -> Invitation:
    """The invitation a link names while it can still be accepted; ValidationError (code invalid,
    revoked, used or expired) with words for the person holding the link, otherwise."""
    try:
        data = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise _error(LINK_INVALID, "invalid") from None
    invitation_id = data.get("i") if isinstance(data, dict) else None
    if not isinstance(invitation_id, int) or isinstance(invitation_id, bool):
        raise _error(LINK_INVALID, "invalid")
    rows = Invitation.objects.select_for_update() if lock else Invitation.objects.all()
    invitation = rows.select_related("customer").filter(pk=invitation_id).first()
    if invitation is None:
        raise _error(LINK_INVALID, "invalid")
    if invitation.revoked_at is not None:
        raise _error("This invitation was withdrawn. Ask the account's owner to invite you again.", "revoked")
    if invitation.accepted_at is not None:
        raise _error("This invitation was already used. Log in to reach the account.", "used")
    if invitation.expires_at <= timezone.now():
        raise _error(f"This invitation has expired (invitations work for {INVITE_DAYS} days). "
                     "Ask the account's owner to invite you again.", "expired")
    return invitation


def joining_refusal(*, invitation: Invitation, user: AbstractBaseUser) -> ValidationError | None:
    """Why this signed-in user cannot accept this invitation, or None when they can."""
    if user.email.lower() != invitation.email.lower():
        return _error(f"This invitation is for {invitation.email}, and you are logged in as {user.email}. "
                      "Log out, then open the link again.", "email_mismatch")
    if Membership.objects.filter(user=user).exists() or Customer.objects.filter(owner=user).exists():
        return _error("You are already a member of a Tollbooth account, and a login belongs to one "
                      "account. Ask for the invitation to go to another email.", "has_account")
    return None


@transaction.atomic
def invitation_accept(*, token: str, user: AbstractBaseUser) -> Joined:
    """Join the account as the invited role: once, by the invited address, for someone on no team."""
    # Locked: of two clicks at once, the second waits, then finds the invitation used.
    invitation = invitation_read(token=token, lock=True)
    refusal = joining_refusal(invitation=invitation, user=user)
    if refusal is not None:
        raise refusal
    try:
        with transaction.atomic():
            membership = Membership.objects.create(customer=invitation.customer, user=user, role=invitation.role,
                                                   invited_by=invitation.invited_by)
    except IntegrityError:  # joined another account a moment ago
        raise _error("You are already a member of a Tollbooth account.", "has_account") from None
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    return Joined(membership=membership, user=user)


@transaction.atomic
def invitation_signup(*, token: str, password: str) -> Joined:
    """Create a login for the invited address and join: no customer, no trial, no key of its own
    (the account's are the team's)."""
    invitation = invitation_read(token=token)
    user_model = get_user_model()
    if user_model.objects.filter(email__iexact=invitation.email).exists() or \
            user_model.objects.filter(username=invitation.email.lower()).exists():
        raise _error("An account with this email already exists: log in, then open the link again.", "taken")
    candidate = user_model(username=invitation.email.lower(), email=invitation.email)
    try:
        password_validation.validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ValidationError({"password": exc.error_list}) from None
    try:
        with transaction.atomic():
            user = user_model.objects.create_user(username=invitation.email.lower(), email=invitation.email,
                                                  password=password)
    except IntegrityError:  # the same address signed up a moment ago
        raise _error("An account with this email already exists: log in, then open the link again.", "taken") from None
    return invitation_accept(token=token, user=user)


# --- members ---

def _member(customer: Customer, member_id: int) -> Membership:
    # A URL can hold any digits; Postgres would raise on an out-of-range id.
    rows = Membership.objects.select_related("user").filter(customer=customer, pk=member_id)
    membership = rows.first() if 0 < member_id <= BIGINT_MAX else None
    if membership is None:
        raise _error("That person is not a member of this account.", "unknown_member")
    return membership


def _last_owner_check(membership: Membership, what: str) -> None:
    if membership.role != Role.OWNER:
        return
    if not Membership.objects.filter(customer=membership.customer_id, role=Role.OWNER).exclude(pk=membership.pk).exists():
        raise _error(f"{membership.user.email} is the account's only owner and cannot {what}. "
                     "Make another member an owner first.", "last_owner")


def _contact_move(customer: Customer, leaving: Membership) -> None:
    """The primary contact stops being an owner: the longest-standing other owner takes over."""
    if customer.owner_id != leaving.user_id:
        return
    successor = (Membership.objects.filter(customer=customer, role=Role.OWNER).exclude(pk=leaving.pk)
                 .order_by("created_at", "pk").first())
    customer.owner_id = successor.user_id  # _last_owner_check made sure there is one
    customer.save(update_fields=["owner"])


@transaction.atomic
def member_role_change(*, customer: Customer, member_id: int, role: str, by: AbstractBaseUser) -> Membership:
    customer = _customer_lock(customer)
    _owner_check(customer=customer, by=by)
    membership = _member(customer, member_id)
    role = _role_check(role)
    if membership.role == role:
        return membership
    if role != Role.OWNER:
        _last_owner_check(membership, "stop being an owner")
        _contact_move(customer, membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, customer: Customer, member_id: int, by: AbstractBaseUser) -> Membership:
    """Take someone off the team; their next request finds no membership (the portal reads it on
    every request), so the removal holds at once, in every browser they are signed in on."""
    customer = _customer_lock(customer)
    _owner_check(customer=customer, by=by)
    membership = _member(customer, member_id)
    _last_owner_check(membership, "be removed")
    _contact_move(customer, membership)
    membership.delete()
    return membership


@transaction.atomic
def member_leave(*, customer: Customer, user: AbstractBaseUser) -> Membership:
    """Any member may leave, except the last owner (who closes the account instead)."""
    customer = _customer_lock(customer)
    membership = Membership.objects.select_related("user").filter(customer=customer, user=user).first()
    if membership is None:
        raise _error("You are not a member of this account.", "unknown_member")
    if membership.role == Role.OWNER and not Membership.objects.filter(
            customer=customer, role=Role.OWNER).exclude(pk=membership.pk).exists():
        raise _error("You are the account's only owner, so you cannot leave it. Make another member an "
                     "owner first, or close the account.", "last_owner")
    _contact_move(customer, membership)
    membership.delete()
    return membership


@transaction.atomic
def team_disband(*, customer: Customer) -> int:
    """A closed account keeps no team: every member but the primary contact (whose login closing
    turns off) loses access at once, and open invitations stop working. Returns how many left."""
    Invitation.objects.filter(customer=customer, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now())
    removed, _ = Membership.objects.filter(customer=customer).exclude(user_id=customer.owner_id).delete()
    return removed
