"""One function per email; none of them ever carries a raw API key."""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

from plans.models import Terms
from plans.selectors import product_names

from .email_change import LINK_HOURS, email_change_token
from .models import ApiKey, Customer, Invitation
from .selectors import customer_for_user
from .team import INVITE_DAYS, invitation_token
from .text import single_line


def _send(*, to: str, template: str, context: dict, attachments: tuple = ()) -> None:
    """`attachments`: (filename, content, mimetype) triples, e.g. an invoice's PDF."""
    context = {"site_url": settings.SITE_URL, **context}
    # One line whatever the names in it hold: a CR or LF would make the send raise BadHeaderError.
    subject = single_line(render_to_string(f"emails/{template}_subject.txt", context))
    body = render_to_string(f"emails/{template}_body.txt", context)
    message = EmailMultiAlternatives(subject, body, settings.DEFAULT_FROM_EMAIL, [to])
    message.attach_alternative(render_to_string(f"emails/{template}_body.html", context), "text/html")
    for attachment in attachments:
        message.attach(*attachment)
    message.send()


# Public name for the apps above (billing, notifications): one way to send, one layout.
email_send = _send


def welcome_email_send(*, customer_id: int) -> None:
    customer = Customer.objects.select_related("owner", "plan").get(pk=customer_id)
    _send(to=customer.email, template="welcome", context={"customer": customer})


def key_rotated_email_send(*, key_id: int) -> None:
    key = ApiKey.objects.select_related("customer__owner", "rotated_from").get(pk=key_id)
    _send(to=key.customer.email, template="key_rotated", context={"key": key, "old": key.rotated_from})


TERMS_LABELS = (
    ("price", "Price a month"), ("included_calls", "Included calls"), ("overage_price", "Each call beyond them"),
    ("hard_cap", "Calls beyond them"), ("rate_per_minute", "Calls a minute"), ("entitlements", "API products"),
)


def _terms_value(terms: Terms, name: str):
    value = getattr(terms, name)
    if name == "entitlements":  # product slugs, shown by name
        names = product_names()
        return [names.get(slug, slug) for slug in value]
    return value


def terms_notice_email_send(*, customer_id: int, old_terms_id: int, new_terms_id: int, starts_at: str) -> None:
    """Staff moved the customer's plan to its current terms from `starts_at` (a period start)."""
    customer = Customer.objects.select_related("owner", "plan").get(pk=customer_id)
    terms = Terms.objects.in_bulk([old_terms_id, new_terms_id])
    old, new = terms[old_terms_id], terms[new_terms_id]
    rows = [(label, _terms_value(old, name), _terms_value(new, name), name) for name, label in TERMS_LABELS]
    _send(to=customer.email, template="terms_changed", context={
        "customer": customer, "old": old, "new": new, "starts_at": datetime.fromisoformat(starts_at),
        "changes": [{"label": label, "old": before, "new": after, "name": name}
                    for label, before, after, name in rows if before != after],
    })


def _account_user(user_id: int):
    """The user and the account they are on (as a member, not only as its contact), or None."""
    user = get_user_model().objects.get(pk=user_id)
    return user, customer_for_user(user)


def email_change_confirm_email_send(*, user_id: int, email: str) -> None:
    """To the new address: the link that makes the change (the address must prove it is reachable)."""
    user, customer = _account_user(user_id)
    token = email_change_token(user=user, email=email)
    _send(to=email, template="email_change_confirm", context={
        "customer": customer, "new_email": email, "hours": LINK_HOURS,
        "link": settings.SITE_URL.rstrip("/") + reverse("email-change-confirm", args=[token]),
    })


def email_change_requested_email_send(*, user_id: int, email: str) -> None:
    """To the current address: a change was asked for, and nothing happens unless the new one confirms."""
    user, customer = _account_user(user_id)
    _send(to=user.email, template="email_change_requested",
          context={"customer": customer, "new_email": email, "hours": LINK_HOURS})


def email_changed_email_send(*, user_id: int, old_email: str) -> None:
    """To the address just replaced: the last word it hears from us, in case it was not its owner's doing."""
    user, customer = _account_user(user_id)
    _send(to=old_email, template="email_changed", context={"customer": customer, "new_email": user.email})


def password_changed_email_send(*, user_id: int, changed_at: str) -> None:
    user, customer = _account_user(user_id)
    _send(to=user.email, template="password_changed",
          context={"customer": customer, "changed_at": datetime.fromisoformat(changed_at)})


def team_invite_email_send(*, invitation_id: int) -> None:
    """To the invited address: who invites them, to which account, in which role, and the link."""
    invitation = Invitation.objects.select_related("customer", "invited_by").get(pk=invitation_id)
    if invitation.revoked_at is not None or invitation.accepted_at is not None:
        return  # withdrawn (or used) before the send: a dead link helps nobody
    token = invitation_token(invitation=invitation)
    _send(to=invitation.email, template="team_invite", context={
        "invitation": invitation, "customer": invitation.customer, "days": INVITE_DAYS,
        "inviter": invitation.invited_by.email if invitation.invited_by else "An owner",
        "role": invitation.get_role_display(),
        "link": settings.SITE_URL.rstrip("/") + reverse("team-invite-accept", args=[token]),
    })
