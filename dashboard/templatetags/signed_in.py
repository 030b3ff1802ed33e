"""{% signed_in_user as u %}: the person signed in to the site, on pages DRF renders too.

/v1/docs/ is served by DRF with no authentication classes, so API keys play no part there and
DRF sets the request's user to nobody (on the Django request as well). A signed-in customer
should still keep the portal's header on it: the user is read from the session, as Django's
own middleware reads it."""
from __future__ import annotations

from django import template
from django.contrib.auth import get_user

register = template.Library()


@register.simple_tag(takes_context=True)
def signed_in_user(context):
    request = context.get("request")
    if request is None or not hasattr(request, "session"):
        return None
    user = get_user(request)
    return user if user.is_authenticated else None
