"""One function per email; none of them ever carries a raw API key."""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from plans.models import Terms
from plans.selectors import product_names

from .models import ApiKey, Customer
from .text import single_line


def _send(*, to: str, template: str, context: dict) -> None:
    context = {"site_url": settings.SITE_URL, **context}
    # One line whatever the names in it hold: a CR or LF would make the send raise BadHeaderError.
    subject = single_line(render_to_string(f"emails/{template}_subject.txt", context))
    body = render_to_string(f"emails/{template}_body.txt", context)
    message = EmailMultiAlternatives(subject, body, settings.DEFAULT_FROM_EMAIL, [to])
    message.attach_alternative(render_to_string(f"emails/{template}_body.html", context), "text/html")
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
