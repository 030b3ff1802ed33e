from django.contrib.auth import views as auth_views
from django.urls import path

from . import team_views, views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("signup/welcome/", views.signup_welcome, name="signup-welcome"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("email/confirm/<str:token>/", views.email_change_link, name="email-change-confirm"),
    path("invite/<str:token>/", team_views.invite_accept, name="team-invite-accept"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    # Django's reset flow; these names are the ones its views reverse.
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/done/",
        auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html"),
        name="password_reset_done",
    ),
    path("reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="accounts/password_reset_complete.html"),
        name="password_reset_complete",
    ),
]
