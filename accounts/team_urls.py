"""The team page, mounted at /portal/team/ (config/urls.py); the invitation link is in accounts.urls."""
from django.urls import path

from . import team_views

urlpatterns = [
    path("", team_views.team, name="team"),
    path("invite/", team_views.team_invite_send, name="team-invite"),
    path("invites/<int:invitation_id>/revoke/", team_views.team_invite_revoke, name="team-invite-revoke"),
    path("members/<int:member_id>/role/", team_views.team_member_role, name="team-member-role"),
    path("members/<int:member_id>/remove/", team_views.team_member_remove, name="team-member-remove"),
    path("leave/", team_views.team_leave, name="team-leave"),
]
