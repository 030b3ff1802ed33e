"""What each role of a team may do in the portal: the one place the rule is written (README "Teams").

Every portal view names the capability it needs (`accounts.decorators.customer_required`), the
header shows only the links a role may follow, and the role-matrix test holds every portal URL
to this table.
"""
from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    """A member's role (`accounts.models.Membership.role`)."""

    OWNER = "owner", "Owner"
    DEVELOPER = "developer", "Developer"
    BILLING = "billing", "Billing"

EVERYONE = frozenset(Role.values)

# capability -> the roles that have it
CAPABILITIES: dict[str, frozenset[str]] = {
    # The overview, one's own sign-in email and password, the team list and leaving it.
    "overview": EVERYONE,
    "account": EVERYONE,
    "team": EVERYONE,
    # Keys, usage, and the settings page (usage alerts, spend cap, webhooks).
    "keys": frozenset({Role.OWNER, Role.DEVELOPER}),
    "usage": frozenset({Role.OWNER, Role.DEVELOPER}),
    "settings": frozenset({Role.OWNER, Role.DEVELOPER}),
    # Invoices and their PDFs, the card, the plan, cancelling, the billing details.
    "billing": frozenset({Role.OWNER, Role.BILLING}),
    # Inviting, changing roles, removing members; closing the whole account.
    "team_manage": frozenset({Role.OWNER}),
    "account_close": frozenset({Role.OWNER}),
}

# What a page is called when a member is turned away from it.
CAPABILITY_NAMES = {
    "overview": "the overview", "account": "your account", "team": "the team page", "keys": "API keys",
    "usage": "usage", "settings": "alerts and webhooks", "billing": "billing", "team_manage": "managing the team",
    "account_close": "closing the account",
}


def role_can(role: str, capability: str) -> bool:
    return role in CAPABILITIES[capability]


def roles_with(capability: str) -> list[str]:
    """The roles that have `capability`, by display name, in the order of Role."""
    return [label for value, label in Role.choices if value in CAPABILITIES[capability]]


def capabilities_of(role: str) -> dict[str, bool]:
    """{capability: allowed} for one role: what the header and pages read (`membership.can.billing`)."""
    return {capability: role in roles for capability, roles in CAPABILITIES.items()}
