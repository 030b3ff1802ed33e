"""Teams (README "Teams"): invitations by signed link, roles, the last-owner rule, removal at once."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer, Invitation, Membership, TrialClaim
from accounts.selectors import customer_for_user, membership_for_user
from accounts.services import customer_signup
from accounts.team import (SALT, invitation_read, invitation_revoke, invitation_signup,
                           invitation_token, member_leave, member_remove, member_role_change, team_invite)
from tests.factories import CustomerFactory, InvoiceFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_outside_task")]

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a long and unguessable one"


@pytest.fixture
def owner_customer(db):
    return CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Analytical Engines")


def _member(customer: Customer, email: str, role: str) -> Membership:
    return Membership.objects.create(customer=customer, user=UserFactory(email=email), role=role)


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _invite(customer: Customer, email: str = "grace@example.com", role: str = "developer") -> Invitation:
    return team_invite(customer=customer, email=email, role=role, by=customer.owner)


def _mailed_link(email: str) -> str:
    [message] = [m for m in mail.outbox if m.to == [email]]
    return re.search(r"(/invite/[^/\s]+/)", message.body).group(1)


# --- every customer has its contact as an owner ---

def test_a_signup_makes_its_person_the_accounts_owner(starter_plan):
    signup = customer_signup(email="ada@example.com", company="Engines", password=PASSWORD, plan=starter_plan)

    membership = Membership.objects.get(customer=signup.customer)
    assert (membership.user, membership.role) == (signup.customer.owner, "owner")


def test_a_customer_inserted_without_save_still_lets_its_contact_in_as_owner(starter_plan):
    user = UserFactory(email="bulk@example.com")
    [customer] = Customer.objects.bulk_create([Customer(owner=user, company="Bulk", plan=starter_plan,
                                                        terms_id=CustomerFactory().terms_id)])

    assert not Membership.objects.filter(user=user).exists()
    assert (membership_for_user(user).customer, membership_for_user(user).role) == (customer, "owner")
    assert _signed_in(user).get(reverse("billing")).status_code == 200


# --- invitations ---

def test_an_invitation_emails_a_signed_link_that_a_new_person_uses_to_join(owner_customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invitation = _invite(owner_customer)

    [message] = mail.outbox
    assert message.to == ["grace@example.com"]
    assert message.subject == "You are invited to Analytical Engines on Tollbooth"
    assert "ada@example.com invites you to join Analytical Engines on Tollbooth as Developer." in message.body
    assert "the link works once, for 7 days" in message.body
    link = _mailed_link("grace@example.com")
    assert signing.loads(link.split("/")[2], salt=SALT) == {"i": invitation.pk}

    client = Client()
    page = client.get(link)
    assert page.status_code == 200 and 'id="invite-role">Developer<' in page.content.decode()
    response = client.post(link, {"password": NEW_PASSWORD})

    assert (response.status_code, response["Location"]) == (302, reverse("portal"))
    grace = get_user_model().objects.get(email="grace@example.com")
    assert (grace.membership.customer, grace.membership.role) == (owner_customer, "developer")
    assert grace.membership.invited_by == owner_customer.owner
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None


def test_joining_by_link_gives_no_customer_trial_or_key_of_ones_own(owner_customer, django_capture_on_commit_callbacks):
    customers, claims = Customer.objects.count(), TrialClaim.objects.count()
    invitation = _invite(owner_customer)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        joined = invitation_signup(token=invitation_token(invitation=invitation), password=NEW_PASSWORD)

    assert (Customer.objects.count(), TrialClaim.objects.count()) == (customers, claims)
    assert customer_for_user(joined.user) == owner_customer
    assert mail.outbox == []  # no welcome email: the account is not theirs


def test_the_link_works_once(owner_customer):
    token = invitation_token(invitation=_invite(owner_customer))
    invitation_signup(token=token, password=NEW_PASSWORD)

    with pytest.raises(ValidationError, match="already used") as used:
        invitation_read(token=token)
    assert used.value.code == "used"
    response = Client().get(reverse("team-invite-accept", args=[token]))
    assert response.status_code == 400
    assert 'id="invite-error" data-code="used"' in response.content.decode()


def test_the_link_expires_after_seven_days(owner_customer):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        token = invitation_token(invitation=_invite(owner_customer))
        traveller.shift(timedelta(days=7) - timedelta(seconds=1))
        assert invitation_read(token=token).email == "grace@example.com"
        traveller.shift(timedelta(seconds=1))

        with pytest.raises(ValidationError, match="expired") as expired:
            invitation_read(token=token)
        assert expired.value.code == "expired"
        response = Client().post(reverse("team-invite-accept", args=[token]), {"password": NEW_PASSWORD})
    assert response.status_code == 400 and 'data-code="expired"' in response.content.decode()
    assert not get_user_model().objects.filter(email="grace@example.com").exists()


def test_a_withdrawn_invitation_link_says_so(owner_customer):
    invitation = _invite(owner_customer)
    invitation_revoke(customer=owner_customer, invitation_id=invitation.pk, by=owner_customer.owner)

    response = Client().get(reverse("team-invite-accept", args=[invitation_token(invitation=invitation)]))

    assert response.status_code == 400
    assert 'data-code="revoked"' in response.content.decode() and "This invitation was withdrawn." in response.content.decode()


@pytest.mark.parametrize("token", ["nonsense", signing.dumps({"i": "1"}, salt=SALT), signing.dumps({"i": 10**30}, salt=SALT),
                                   signing.dumps({"i": 1}, salt="another.salt"), signing.dumps([1], salt=SALT)])
def test_a_made_up_or_tampered_link_is_a_clear_page_not_an_error(owner_customer, token):
    response = Client().get(reverse("team-invite-accept", args=[token]))

    assert response.status_code == 400 and 'data-code="invalid"' in response.content.decode()


def test_an_invitation_to_a_member_or_an_invited_address_is_refused(owner_customer):
    _member(owner_customer, "grace@example.com", "billing")
    with pytest.raises(ValidationError, match="already a member of this account") as member:
        _invite(owner_customer, email="Grace@Example.com")
    assert member.value.error_dict["email"][0].code == "member"

    _invite(owner_customer, email="linus@example.com")
    with pytest.raises(ValidationError, match="already invited") as invited:
        _invite(owner_customer, email="LINUS@example.com")
    assert invited.value.error_dict["email"][0].code == "invited"


def test_an_expired_invitation_gives_way_to_a_new_one(owner_customer):
    first = _invite(owner_customer)
    Invitation.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    second = _invite(owner_customer, role="billing")

    first.refresh_from_db()
    assert first.revoked_at is not None and second.role == "billing"


def test_only_an_owner_can_invite(owner_customer):
    developer = _member(owner_customer, "grace@example.com", "developer")

    with pytest.raises(ValidationError, match="Only an owner") as refused:
        team_invite(customer=owner_customer, email="x@example.com", role="owner", by=developer.user)
    assert refused.value.code == "not_owner"


def test_a_signed_in_person_on_no_team_joins_with_the_button_not_by_opening_the_link(owner_customer):
    grace = UserFactory(email="grace@example.com")
    link = reverse("team-invite-accept", args=[invitation_token(invitation=_invite(owner_customer))])
    client = _signed_in(grace)

    assert client.get(link).status_code == 200
    assert not Membership.objects.filter(user=grace).exists()  # mail scanners open links
    assert client.post(link).status_code == 302
    assert Membership.objects.get(user=grace).role == "developer"


def test_an_anonymous_visitor_can_log_in_and_come_back_to_the_link(owner_customer):
    UserFactory(email="grace@example.com")
    link = reverse("team-invite-accept", args=[invitation_token(invitation=_invite(owner_customer))])
    client = Client()

    page = client.get(link).content.decode()
    assert f'href="/login/?next={link}"' in page
    response = client.post(f"/login/?next={link}", {"username": "grace@example.com", "password": PASSWORD, "next": link})

    assert (response.status_code, response["Location"]) == (302, link)
    assert client.post(link).status_code == 302


def test_someone_already_on_a_team_or_with_another_email_cannot_accept(owner_customer):
    link = reverse("team-invite-accept", args=[invitation_token(invitation=_invite(owner_customer))])
    other_customer = CustomerFactory(owner=UserFactory(email="grace@example.com"))

    response = _signed_in(other_customer.owner).post(link)
    assert response.status_code == 403 and 'data-code="has_account"' in response.content.decode()

    response = _signed_in(UserFactory(email="mallory@example.com")).post(link)
    assert response.status_code == 403 and 'data-code="email_mismatch"' in response.content.decode()
    assert "This invitation is for grace@example.com" in response.content.decode()
    assert Membership.objects.filter(customer=owner_customer).count() == 1


def test_signing_up_through_a_link_for_an_address_with_a_login_says_to_log_in(owner_customer):
    UserFactory(email="grace@example.com")
    token = invitation_token(invitation=_invite(owner_customer))

    with pytest.raises(ValidationError, match="log in, then open the link again") as taken:
        invitation_signup(token=token, password=NEW_PASSWORD)
    assert taken.value.code == "taken"


def test_a_weak_password_is_a_form_error(owner_customer):
    link = reverse("team-invite-accept", args=[invitation_token(invitation=_invite(owner_customer))])

    response = Client().post(link, {"password": "grace"})

    assert response.status_code == 400 and "This password is too short" in response.content.decode()
    assert not get_user_model().objects.filter(email="grace@example.com").exists()


# --- the last owner, and the primary contact ---

def test_the_last_owner_cannot_leave_be_demoted_or_be_removed(owner_customer):
    ada = owner_customer.owner
    ada_seat = Membership.objects.get(user=ada)
    _member(owner_customer, "grace@example.com", "developer")

    for attempt in (lambda: member_leave(customer=owner_customer, user=ada),
                    lambda: member_role_change(customer=owner_customer, member_id=ada_seat.pk, role="billing", by=ada),
                    lambda: member_remove(customer=owner_customer, member_id=ada_seat.pk, by=ada)):
        with pytest.raises(ValidationError, match="only owner") as refused:
            attempt()
        assert refused.value.code == "last_owner"
    assert Membership.objects.get(user=ada).role == "owner"


def test_the_last_owner_is_told_on_the_team_page(owner_customer):
    response = _signed_in(owner_customer.owner).post(reverse("team-leave"))

    assert response.status_code == 400
    assert 'id="team-error"' in response.content.decode()
    assert "You are the account&#x27;s only owner, so you cannot leave it." in response.content.decode()


def test_when_the_primary_contact_leaves_another_owner_becomes_it(owner_customer):
    linus = _member(owner_customer, "linus@example.com", "owner")

    member_leave(customer=owner_customer, user=owner_customer.owner)

    owner_customer.refresh_from_db()
    assert owner_customer.owner == linus.user and owner_customer.email == "linus@example.com"


def test_demoting_the_primary_contact_moves_the_contact_to_an_owner(owner_customer):
    ada = owner_customer.owner
    linus = _member(owner_customer, "linus@example.com", "owner")

    member_role_change(customer=owner_customer, member_id=Membership.objects.get(user=ada).pk, role="developer",
                       by=linus.user)

    owner_customer.refresh_from_db()
    assert owner_customer.owner == linus.user
    assert Membership.objects.get(user=ada).role == "developer"


def test_removing_the_primary_contact_moves_the_contact(owner_customer):
    ada = owner_customer.owner
    linus = _member(owner_customer, "linus@example.com", "owner")

    member_remove(customer=owner_customer, member_id=Membership.objects.get(user=ada).pk, by=linus.user)

    owner_customer.refresh_from_db()
    assert owner_customer.owner == linus.user and not Membership.objects.filter(user=ada).exists()
    assert customer_for_user(ada) is None


# --- removal holds at once ---

def test_a_removed_member_is_out_on_their_very_next_request(owner_customer):
    grace = _member(owner_customer, "grace@example.com", "developer")
    graces_browser = _signed_in(grace.user)
    assert graces_browser.get(reverse("portal-keys")).status_code == 200

    response = _signed_in(owner_customer.owner).post(reverse("team-member-remove", args=[grace.pk]))
    assert (response.status_code, response["Location"]) == (302, reverse("team"))

    page = graces_browser.get(reverse("portal-keys"))  # the same session, still signed in
    assert page.status_code == 200
    assert "accounts/no_membership.html" in [t.name for t in page.templates]
    assert "not a member of any customer account" in page.content.decode()
    assert graces_browser.post(reverse("portal-keys"), {"name": "sneaky", "mode": "live"}).status_code == 200
    assert not owner_customer.api_keys.filter(name="sneaky").exists()


def test_a_member_can_leave_and_is_out_at_once(owner_customer):
    grace = _member(owner_customer, "grace@example.com", "billing")
    client = _signed_in(grace.user)

    response = client.post(reverse("team-leave"), follow=True)

    assert response.redirect_chain == [(reverse("portal"), 302)]
    assert "You left Analytical Engines." in response.content.decode()
    assert "not a member of any customer account" in response.content.decode()
    assert not Membership.objects.filter(user=grace.user).exists()


# --- the team page ---

def test_the_team_page_lists_members_and_open_invitations(owner_customer):
    _member(owner_customer, "grace@example.com", "developer")
    _invite(owner_customer, email="linus@example.com", role="billing")

    page = _signed_in(owner_customer.owner).get(reverse("team")).content.decode()

    assert page.index('data-email="ada@example.com"') < page.index('data-email="grace@example.com"')
    assert "primary contact" in page
    assert re.search(r'data-email="linus@example.com">\s*<td>linus@example.com</td>\s*<td>Billing</td>', page)
    assert 'id="invite-form"' in page


def test_a_developer_sees_the_team_but_no_invite_form_or_role_controls(owner_customer):
    grace = _member(owner_customer, "grace@example.com", "developer")

    page = _signed_in(grace.user).get(reverse("team")).content.decode()

    assert 'id="my-role">Developer<' in page
    assert 'id="invite-form"' not in page and 'name="role"' not in page
    assert 'id="leave-form"' in page


@pytest.mark.parametrize(("data", "message"), [
    ({"email": "not-an-email", "role": "developer"}, "Enter a valid email address."),
    ({"email": "ada@example.com", "role": "developer"}, "ada@example.com is already a member of this account."),
    ({"email": "linus@example.com", "role": "developer"}, "linus@example.com is already invited."),
    ({"email": "x@example.com", "role": "admin"}, "Choose owner, developer or billing."),
])
def test_a_bad_invitation_is_a_form_error(owner_customer, data, message):
    _invite(owner_customer, email="linus@example.com")

    response = _signed_in(owner_customer.owner).post(reverse("team-invite"), data)

    assert response.status_code == 400 and message in response.content.decode()
    assert Invitation.objects.filter(customer=owner_customer).count() == 1


def test_an_owner_changes_a_role_and_it_holds_on_the_members_next_page(owner_customer):
    grace = _member(owner_customer, "grace@example.com", "developer")
    graces_browser = _signed_in(grace.user)
    assert graces_browser.get(reverse("billing")).status_code == 403

    response = _signed_in(owner_customer.owner).post(reverse("team-member-role", args=[grace.pk]), {"role": "billing"})

    assert response.status_code == 302
    assert graces_browser.get(reverse("billing")).status_code == 200
    assert graces_browser.get(reverse("portal-keys")).status_code == 403


def test_another_accounts_member_or_invitation_is_a_404(owner_customer):
    stranger = _member(CustomerFactory(), "eve@example.com", "developer")
    invitation = _invite(CustomerFactory(), email="x@example.com")
    client = _signed_in(owner_customer.owner)

    assert client.post(reverse("team-member-remove", args=[stranger.pk])).status_code == 404
    assert client.post(reverse("team-member-role", args=[stranger.pk]), {"role": "owner"}).status_code == 404
    assert client.post(reverse("team-invite-revoke", args=[invitation.pk])).status_code == 404
    assert client.post(reverse("team-member-remove", args=[2**63])).status_code == 404
    assert Membership.objects.get(pk=stranger.pk).role == "developer"


# --- the header shows what a role may open ---

def _nav(client: Client) -> str:
    html = client.get(reverse("team")).content.decode()
    return html[html.index('id="main-nav"'):html.index("</nav>")]


def test_the_header_shows_each_role_only_its_links(owner_customer):
    developer = _member(owner_customer, "grace@example.com", "developer")
    billing = _member(owner_customer, "linus@example.com", "billing")

    owner_nav, developer_nav, billing_nav = (_nav(_signed_in(u)) for u in (owner_customer.owner, developer.user, billing.user))

    assert all(reverse(n) in owner_nav for n in ("portal-keys", "billing", "portal-settings", "team"))
    assert reverse("portal-keys") in developer_nav and reverse("billing") not in developer_nav
    assert reverse("billing") in billing_nav and reverse("portal-keys") not in billing_nav
    assert reverse("portal-settings") not in billing_nav and reverse("portal-usage") not in billing_nav
    assert reverse("portal-usage") in developer_nav


def test_staff_on_a_team_see_the_staff_links_and_their_portal_links(owner_customer):
    staff = UserFactory(email="staff@example.com", is_staff=True)
    Membership.objects.create(customer=owner_customer, user=staff, role="developer")

    nav = _nav(_signed_in(staff))

    assert reverse("staff-dashboard") in nav and reverse("admin:index") in nav
    assert reverse("portal-keys") in nav and reverse("billing") not in nav


def test_the_overview_shows_invoices_only_to_billing_roles_and_key_links_only_to_key_roles(owner_customer):
    developer = _member(owner_customer, "grace@example.com", "developer")
    billing = _member(owner_customer, "linus@example.com", "billing")

    owner_page, developer_page, billing_page = (_signed_in(u).get(reverse("portal")).content.decode()
                                                for u in (owner_customer.owner, developer.user, billing.user))

    assert 'id="invoices"' in owner_page and "Manage API keys" in owner_page
    assert 'id="invoices"' not in developer_page and "Manage API keys" in developer_page
    assert 'id="invoices"' in billing_page and "Manage API keys" not in billing_page


def test_closing_the_account_ends_every_members_access_and_every_open_invitation(owner_customer):
    grace = _member(owner_customer, "grace@example.com", "developer")
    invitation = _invite(owner_customer, email="linus@example.com")
    graces_browser = _signed_in(grace.user)

    response = _signed_in(owner_customer.owner).post(reverse("portal-account-delete"), {"password": PASSWORD})

    assert response.status_code == 302
    assert "accounts/no_membership.html" in [t.name for t in graces_browser.get(reverse("portal-keys")).templates]
    with pytest.raises(ValidationError, match="withdrawn"):
        invitation_read(token=invitation_token(invitation=invitation))


def test_a_developer_cannot_see_invoices_or_change_the_card_and_billing_cannot_create_keys(owner_customer):
    invoice = InvoiceFactory(customer=owner_customer, number="TB-2026-000001")
    developer = _signed_in(_member(owner_customer, "grace@example.com", "developer").user)
    billing = _signed_in(_member(owner_customer, "linus@example.com", "billing").user)

    assert developer.get(reverse("billing")).status_code == 403
    assert developer.get(reverse("billing-invoice", args=[invoice.pk])).status_code == 403
    assert developer.get(reverse("billing-invoice-pdf", args=[invoice.pk])).status_code == 403
    assert developer.post(reverse("billing-card-remove")).status_code == 403
    assert developer.post(reverse("billing-plan"), {"plan": "pro", "confirm": "1"}).status_code == 403
    assert billing.post(reverse("portal-keys"), {"name": "mine", "mode": "live"}).status_code == 403
    assert not owner_customer.api_keys.filter(name="mine").exists()
    assert billing.get(reverse("billing-invoice", args=[invoice.pk])).status_code == 200


def test_a_role_that_does_not_exist_is_a_form_error(owner_customer):
    grace = _member(owner_customer, "grace@example.com", "developer")

    response = _signed_in(owner_customer.owner).post(reverse("team-member-role", args=[grace.pk]), {"role": "admin"})

    assert response.status_code == 400 and "Choose owner, developer or billing." in response.content.decode()
    assert Membership.objects.get(pk=grace.pk).role == "developer"
