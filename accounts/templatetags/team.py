"""The signed-in person's seat on a team, for the header and pages ({% load team %}).

`{% portal_membership as membership %}` then `membership.can.billing`: what each role may do is
accounts.roles; the header shows only the links a role may follow.
"""
from __future__ import annotations

from django import template

from accounts.decorators import membership_for_request
from accounts.models import Membership

register = template.Library()


@register.simple_tag(takes_context=True)
def portal_membership(context) -> Membership | None:
    request = context.get("request")
    if request is None or not getattr(request, "user", None) or not request.user.is_authenticated:
        return None
    return membership_for_request(request)


@register.filter
def role_label(role: str) -> str:
    return Membership.Role(role).label if role in Membership.Role.values else role
