"""How long a trial has left, in one phrase every page and email prints ({% load trial %}).

The count is accounts.selectors.trial_days_left; only the wording lives here.
"""
from __future__ import annotations

from django import template
from django.utils import dateformat, timezone

from accounts.models import Customer
from accounts.selectors import trial_days_left

register = template.Library()


def _day(moment) -> str:
    return dateformat.format(timezone.localtime(moment), "j F Y")


@register.filter
def trial_ends(customer: Customer) -> str:
    """"ends on 18 December 2026 (14 days left)", "ends today, 18 December 2026", "ended on
    18 December 2026", or "" outside a trial; it reads after "Your Starter trial" or "Trial"."""
    ends_at = getattr(customer, "trial_ends_at", None)
    if ends_at is None:
        return ""
    if ends_at <= timezone.now():  # until the hourly trials run moves the customer on
        return f"ended on {_day(ends_at)}"
    days = trial_days_left(customer)
    if days is None:
        return ""
    if days == 0:
        return f"ends today, {_day(ends_at)}"
    return f"ends on {_day(ends_at)} ({days} day{'' if days == 1 else 's'} left)"


@register.filter
def trial_span(customer: Customer) -> str:
    """The whole trial, start to end: "Dec 4 – Dec 18, 14 days". The end is exclusive (the
    trial ends on Dec 18) and the length is the days it had left when it started."""
    window = customer.trial_window() if isinstance(customer, Customer) else None
    days = trial_days_left(customer, now=window[0]) if window else None
    if not days:
        return ""
    start, end = (timezone.localtime(moment) for moment in window)
    return f"{start:%b} {start.day} – {end:%b} {end.day}, {days} day{'' if days == 1 else 's'}"
