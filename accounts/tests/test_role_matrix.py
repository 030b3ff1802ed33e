"""Every portal URL, for every role, GET and POST: the exact status each one gets (README "Teams").

The URLs come from the resolver, so a portal page added without a rule here fails the first test.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.models import Membership
from accounts.roles import CAPABILITIES
from accounts.services import api_key_issue
from accounts.team import team_invite
from billing.models import Invoice, InvoiceLine
from notifications.services import webhook_endpoint_set, webhook_test_send
from tests.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db

OWNER, DEVELOPER, BILLING = "owner", "developer", "billing"
ROLES = (OWNER, DEVELOPER, BILLING)
OK, FOUND, BAD, FORBIDDEN, NOT_ALLOWED = 200, 302, 400, 403, 405


def _rule(capability, get, post, data=None, args=(), **per_role):
    """What an allowed role gets: `get`/`post` statuses (NOT_ALLOWED where the view refuses the
    method); `per_role` overrides one role's (get, post). A refused role gets 403 (405 first)."""
    return {"capability": capability, "get": get, "post": post, "data": data or {}, "args": args, "per_role": per_role}


# url name -> the rule it is held to. Adding a portal URL means adding its line here.
RULES = {
    "portal": _rule("overview", OK, OK),
    "portal-keys": _rule("keys", OK, FOUND, {"name": "New key", "mode": "live"}),
    "portal-key-revoke": _rule("keys", OK, FOUND, args=("key",)),
    "portal-key-rotate": _rule("keys", OK, FOUND, {"grace_days": "1"}, args=("key",)),
    "portal-usage": _rule("usage", OK, NOT_ALLOWED),
    "portal-usage-export": _rule("usage", OK, NOT_ALLOWED),
    "portal-account": _rule("account", OK, NOT_ALLOWED),
    "portal-account-email": _rule("account", NOT_ALLOWED, BAD, {"email-email": "not an email"}),
    "portal-account-password": _rule("account", NOT_ALLOWED, BAD),
    "portal-account-delete": _rule("account_close", OK, OK),  # no password: the form says so
    "billing": _rule("billing", OK, NOT_ALLOWED),
    "billing-card": _rule("billing", FOUND, NOT_ALLOWED),  # payments not configured here: back to billing
    "billing-card-done": _rule("billing", FOUND, NOT_ALLOWED),
    "billing-card-remove": _rule("billing", FOUND, FOUND),  # no card on file
    "billing-plan": _rule("billing", OK, OK),
    "billing-cancel": _rule("billing", OK, FOUND, {"when": "period_end"}),
    "billing-invoice": _rule("billing", OK, NOT_ALLOWED, args=("invoice",)),
    "billing-invoice-pdf": _rule("billing", OK, NOT_ALLOWED, args=("invoice",)),
    "billing-details": _rule("billing", OK, FOUND, {"name": "Engines Ltd"}),
    "portal-settings": _rule("settings", OK, OK),
    "portal-settings-webhook": _rule("settings", NOT_ALLOWED, FOUND, {"url": "https://b.example.com/"}),
    "portal-settings-webhook-roll": _rule("settings", NOT_ALLOWED, FOUND),
    "portal-settings-webhook-delete": _rule("settings", NOT_ALLOWED, FOUND),
    "portal-settings-webhook-test": _rule("settings", NOT_ALLOWED, FOUND),
    "portal-settings-webhook-resend": _rule("settings", NOT_ALLOWED, FOUND, args=("event",)),
    "team": _rule("team", OK, NOT_ALLOWED),
    "team-invite": _rule("team_manage", NOT_ALLOWED, FOUND, {"email": "new@example.com", "role": "developer"}),
    "team-invite-revoke": _rule("team_manage", NOT_ALLOWED, FOUND, args=("invitation",)),
    "team-member-role": _rule("team_manage", NOT_ALLOWED, FOUND, {"role": "billing"}, args=("other",)),
    "team-member-remove": _rule("team_manage", NOT_ALLOWED, FOUND, args=("other",)),
    # The only owner cannot leave (a form error); the others can.
    "team-leave": _rule("team", NOT_ALLOWED, FOUND, owner=(NOT_ALLOWED, BAD)),
}


def _portal_patterns(patterns=None, prefix: str = "") -> dict[str, object]:
    """{url name: view} for every route the resolver serves under /portal/."""
    found = {}
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.update(_portal_patterns(pattern.url_patterns, route))
        elif isinstance(pattern, URLPattern) and route.startswith("portal/"):
            found[pattern.name] = pattern.callback
    return found


def test_every_portal_url_has_a_role_rule_and_its_view_checks_that_capability():
    views = _portal_patterns()

    assert sorted(views) == sorted(RULES)
    assert {name: getattr(view, "portal_capability", None) for name, view in views.items()} == \
        {name: rule["capability"] for name, rule in RULES.items()}


@pytest.fixture
def team(settings):
    settings.STRIPE_SECRET_KEY = ""  # card pages answer without a payment provider
    customer = CustomerFactory(owner=UserFactory(email="owner@example.com"))
    users = {OWNER: customer.owner}
    for role in (DEVELOPER, BILLING):
        users[role] = UserFactory(email=f"{role}@example.com")
        Membership.objects.create(customer=customer, user=users[role], role=role)
    other = Membership.objects.create(customer=customer, user=UserFactory(email="dev2@example.com"), role=DEVELOPER)
    invoice = Invoice.objects.create(customer=customer, period="2026-10", number="TB-2026-000042", status="open",
                                     subtotal=Decimal("49.00"), total=Decimal("49.00"), plan=customer.plan,
                                     issued_at=timezone.now())
    InvoiceLine.objects.create(invoice=invoice, kind=InvoiceLine.Kind.BASE, description="Starter plan",
                               quantity=Decimal("1"), unit_price=Decimal("49.00"), amount=Decimal("49.00"))
    webhook_endpoint_set(customer=customer, url="https://a.example.com/")
    ids = {
        "key": api_key_issue(customer=customer, name="Production").key.pk,
        "invoice": invoice.pk,
        "event": webhook_test_send(customer=customer).pk,
        "invitation": team_invite(customer=customer, email="invited@example.com", role=DEVELOPER, by=users[OWNER]).pk,
        "other": other.pk,
    }
    return users, ids


def _expected(rule: dict, role: str) -> tuple[int, int]:
    if role in rule["per_role"]:
        return rule["per_role"][role]
    if role in CAPABILITIES[rule["capability"]]:
        return rule["get"], rule["post"]
    # The method check comes first; a method the view takes is refused to the role.
    return (NOT_ALLOWED if rule["get"] == NOT_ALLOWED else FORBIDDEN,
            NOT_ALLOWED if rule["post"] == NOT_ALLOWED else FORBIDDEN)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(RULES))
def test_each_role_gets_exactly_its_status_on_every_portal_url(team, name, role):
    users, ids = team
    rule = RULES[name]
    url = reverse(name, args=[ids[arg] for arg in rule["args"]])
    client = Client()
    client.force_login(users[role])

    got = (client.get(url).status_code, client.post(url, rule["data"]).status_code)

    assert got == _expected(rule, role), f"{role} on {url}"


REFUSED_PAGES = [(name, role) for name, rule in sorted(RULES.items()) for role in ROLES
                 if role not in CAPABILITIES[rule["capability"]] and rule["get"] != NOT_ALLOWED]


@pytest.mark.parametrize(("name", "role"), REFUSED_PAGES)
def test_a_refused_role_is_told_which_roles_may(team, name, role):
    users, ids = team
    rule = RULES[name]
    client = Client()
    client.force_login(users[role])

    page = client.get(reverse(name, args=[ids[arg] for arg in rule["args"]])).content.decode()

    assert f'data-capability="{rule["capability"]}"' in page
    assert f"You are <strong>{role.title()}</strong>" in page
