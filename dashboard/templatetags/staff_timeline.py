"""{{ entries|timeline_merge:more }}: the staff timeline with another app's entries merged in.

The customer's timeline is built here from the apps below `dashboard` (dashboard.timeline); its
sibling `notifications` hands its own entries to the page through its template tag, so neither
app imports the other and the page still reads as one story, newest first."""
from __future__ import annotations

from django import template

from dashboard.timeline import timeline_merge as merge

register = template.Library()


@register.filter
def timeline_merge(entries, more):
    return merge(entries, more or [])
