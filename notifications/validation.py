"""Rules for what customers may set; services enforce them, forms show them as field errors."""
from __future__ import annotations

import ipaddress
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from plans.models import Terms

from .models import NotificationSettings, WebhookEvent
from .outbound import address_is_public

MIN_THRESHOLD, MAX_THRESHOLD, MAX_THRESHOLDS = 1, 1000, 5
MAX_SPEND_CAP = Decimal("1000000")
URL_MAX_LENGTH = 2000


def thresholds_validate(thresholds: list[int]) -> list[int]:
    if len(thresholds) > MAX_THRESHOLDS:
        raise ValidationError({"thresholds": f"Set at most {MAX_THRESHOLDS} thresholds."})
    if any(not isinstance(t, int) or not MIN_THRESHOLD <= t <= MAX_THRESHOLD for t in thresholds):
        raise ValidationError({"thresholds": f"Each threshold must be a whole percentage from {MIN_THRESHOLD} to {MAX_THRESHOLD}."})
    return sorted(set(thresholds))


def spend_cap_validate(*, plan: Terms, spend_cap: Decimal | None) -> None:
    if spend_cap is None:
        return
    if not plan.is_paid:
        raise ValidationError({"spend_cap": "Spend caps are for paid plans; your plan stops at its included calls."})
    if not Decimal("0") <= spend_cap <= MAX_SPEND_CAP or spend_cap != spend_cap.quantize(Decimal("0.01")):
        raise ValidationError({"spend_cap": f"Enter an amount in dollars and cents from $0 to ${MAX_SPEND_CAP:,}."})
    if spend_cap < plan.price:
        raise ValidationError({"spend_cap": f"The cap must be at least your plan's monthly price (${plan.price})."})


def settings_validate(*, plan: Terms, thresholds: list[int], spend_cap: Decimal | None, cap_mode: str) -> list[int]:
    if cap_mode not in NotificationSettings.CapMode.values:
        raise ValidationError({"cap_mode": "Choose alert only or hard stop."})
    spend_cap_validate(plan=plan, spend_cap=spend_cap)
    return thresholds_validate(thresholds)


def webhook_url_validate(url: str) -> str:
    """A URL we may POST to: https (http only when allowed), no credentials, not a private host."""
    url = (url or "").strip()
    schemes = ["http", "https"] if settings.WEBHOOKS_ALLOW_HTTP else ["https"]
    if len(url) > URL_MAX_LENGTH:
        raise ValidationError({"url": f"Use a URL of at most {URL_MAX_LENGTH} characters."})
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ValidationError({"url": "Enter a valid URL, like https://example.com/webhooks/tollbooth."}) from None
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValidationError({"url": "Use an https:// URL: events carry account data."})
    if parts.username or parts.password:
        raise ValidationError({"url": "Leave credentials out of the URL; verify our signature instead."})
    if not settings.WEBHOOKS_ALLOW_PRIVATE and _host_is_private(parts.hostname or ""):
        raise ValidationError({"url": "This URL points to a private or local address, which webhooks cannot reach."})
    return url


def subscribable_event_types() -> list[tuple[str, str]]:
    """The types an endpoint can subscribe to; the test event goes whenever it is asked for."""
    return [(value, label) for value, label in WebhookEvent.Type.choices if value != WebhookEvent.Type.TEST]


def event_types_validate(event_types: list[str]) -> list[str]:
    """The chosen types in a stable order; every type chosen is stored as [] (all, later ones too)."""
    known = [value for value, _ in subscribable_event_types()]
    unknown = sorted(set(event_types) - set(known))
    if unknown:
        raise ValidationError({"event_types": f"Unknown event type: {', '.join(unknown)}."})
    chosen = [value for value in known if value in event_types]
    return [] if chosen == known else chosen


def _host_is_private(host: str) -> bool:
    # A name is only resolved at send time (its answer may change); literal addresses fail here.
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address_is_public(host)
