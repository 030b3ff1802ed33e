from __future__ import annotations

import hashlib
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from plans.models import Plan, Terms
from plans.services import terms_current

from .keyformat import key_mask
from .roles import Role, capabilities_of


class Customer(models.Model):
    class Status(models.TextChoices):
        TRIAL = "trial", "Trial"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        CANCELLED = "cancelled", "Cancelled"

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customer")
    company = models.CharField(max_length=100)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="customers")
    # The terms in force now (the API's limits) and the terms taken at signup (the first run of
    # every invoice). Both are snapshots: editing the plan changes neither (README "Billing").
    terms = models.ForeignKey(Terms, on_delete=models.PROTECT, related_name="+", null=True, editable=False)
    signup_terms = models.ForeignKey(Terms, on_delete=models.PROTECT, related_name="+", null=True, editable=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    # When the trial began: signup, or a later move from Free to a paid plan (billing's
    # plan_change). Empty on rows written before it existed: their trial began at created_at.
    trial_started_at = models.DateTimeField(null=True, blank=True)
    past_due_since = models.DateTimeField(null=True, blank=True)
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Raised whenever anything the API enforces changes (plan, status, keys); workers compare
    # it with the copy in Redis on every call to drop a stale cached key config at once.
    config_version = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        indexes = [models.Index(fields=["status"]), models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return self.company

    def save(self, *args, **kwargs):
        # A customer always has terms. A plan set without them (a fixture, a shell) takes the
        # plan's current terms; billing's plan_change records its own before saving.
        if self.plan_id is not None and (self.terms_id is None or self._terms_plan_id() != self.plan_id):
            self.terms = terms_current(plan=self.plan)
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "terms"}
        if self.signup_terms_id is None and self.terms_id is not None:
            self.signup_terms_id = self.terms_id
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "signup_terms"}
        adding = self._state.adding
        super().save(*args, **kwargs)
        if adding:
            # The primary contact is always an owner member (README "Teams"): every path that
            # creates a customer (signup, admin, fixtures) gets the membership with it.
            Membership.objects.get_or_create(user_id=self.owner_id,
                                             defaults={"customer": self, "role": Membership.Role.OWNER})

    def _terms_plan_id(self) -> int | None:
        cached = self._state.fields_cache.get("terms")
        if cached is not None and cached.pk == self.terms_id:
            return cached.plan_id
        return Terms.objects.filter(pk=self.terms_id).values_list("plan_id", flat=True).first()

    @property
    def email(self) -> str:
        return self.owner.email

    def trial_window(self) -> tuple[datetime, datetime] | None:
        """[start, end) of the customer's trial, or None if it never had one.

        It starts at signup, or later when a Free customer moves to a paid plan with no card
        (billing's plan_change); rows from before trial_started_at existed began at created_at."""
        if self.trial_ends_at is None:
            return None
        start = self.trial_started_at or self.created_at
        return (start, self.trial_ends_at) if self.trial_ends_at > start else None


class ApiKeyQuerySet(models.QuerySet):
    def active(self, now=None):
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ApiKey(models.Model):
    """A customer's API key. Only the SHA-256 of the raw key is kept."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=60)
    prefix = models.CharField(max_length=8)
    key_hash = models.CharField(max_length=64, unique=True)
    last8 = models.CharField(max_length=8)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set when the key is rotated: it keeps working until then (the grace period).
    expires_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_to"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    call_count = models.PositiveBigIntegerField(default=0)
    # A test-mode key (README "The metered API", test mode): same answers, never billed or counted
    # in quota or caps. Not read from the prefix: `sk_test_` keys issued before test mode existed
    # are live keys and stay billed.
    is_test = models.BooleanField(default=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return key_mask(prefix=self.prefix, last8=self.last8)

    @property
    def mode(self) -> str:
        return "test" if self.is_test else "live"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


# Mailbox providers that ignore dots in the local part, and the domain each one stands for:
# Gmail delivers a.da@gmail.com and ada@googlemail.com to the same inbox.
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def email_canonical(email: str) -> str:
    """The one mailbox an address reaches, for "one trial per person" (README "Billing").

    - case never matters (Ada@Example.com is ada@example.com);
    - a `+tag` is dropped on every domain (ada+test@example.com is ada@example.com): the
      common providers (Gmail, Outlook, Fastmail, iCloud, Proton) all deliver tags to the
      untagged mailbox, and a domain that does not cannot be told apart from outside;
    - dots in the local part are dropped only for DOTLESS_DOMAINS (gmail.com and
      googlemail.com, both written as gmail.com): elsewhere a.da and ada may be two people.
    """
    local, _, domain = email.strip().lower().rpartition("@")
    if not local:
        return email.strip().lower()
    local = local.split("+", 1)[0] or local
    if domain in DOTLESS_DOMAINS:
        local, domain = local.replace(".", "") or local, DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"


class TrialClaim(models.Model):
    """A free trial taken: by one mailbox, or by one card (Stripe's fingerprint of its number).

    Kept when the account that took it is deleted (customer becomes empty), so a new account
    for the same person is still refused a second trial. Emails are stored as the SHA-256 of
    their canonical form: the claim remembers a person without keeping a deleted address.
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        CARD = "card", "Card"

    kind = models.CharField(max_length=5, choices=Kind.choices)
    # email: sha256 of email_canonical(address); card: the card's fingerprint.
    value = models.CharField(max_length=64)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="trial_claims")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="one_trial_per_email_or_card")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} claim {self.value[:12]}… by {self.customer_id or 'a deleted account'}"

    @staticmethod
    def email_value(email: str) -> str:
        return hashlib.sha256(email_canonical(email).encode()).hexdigest()


class Membership(models.Model):
    """A person's seat on a customer account, and the role that decides what the portal lets them do.

    One account per person (the user is unique here): the portal reads `user.membership` on every
    request, so a removal holds from the removed person's next page. The customer's `owner` stays
    the account's primary contact (emails, invoices) and is always one of its owner members.
    """

    Role = Role

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.user_id} as {self.role} of {self.customer_id}"

    @property
    def can(self) -> dict[str, bool]:
        """What this member may do, by capability (accounts.roles): `membership.can.billing` in templates."""
        return capabilities_of(self.role)


class Invitation(models.Model):
    """An owner's invitation to join the account; the emailed link carries its id, signed (accounts.team)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=150)
    role = models.CharField(max_length=10, choices=Membership.Role.choices)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One open invitation per address and account: two owners inviting at once make one.
            models.UniqueConstraint(
                Lower("email"), "customer",
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True), name="one_open_invitation_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} as {self.role} of {self.customer_id}"

    def is_open(self, now: datetime | None = None) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > (now or timezone.now())
