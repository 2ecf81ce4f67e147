from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path
from oauth2_provider import views as oauth2_views

from . import views

# Paths as on Frame.io (applications.frame.io and api.frame.io), all on one origin.
urlpatterns = [
    path("", views.index_view, name="index"),
    path("oauth2/auth", oauth2_views.AuthorizationView.as_view(), name="authorize"),
    path("oauth2/token", views.CountingTokenView.as_view(), name="token"),
    path("oauth2/revoke", oauth2_views.RevokeTokenView.as_view(), name="revoke"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("v2/me", views.MeView.as_view(), name="me-v2"),
    path("v4/me", views.MeView.as_view(envelope="data"), name="me-v4"),
    path("_standin/stats", views.stats_view, name="stats"),
    path("_standin/stats/reset", views.stats_reset_view, name="stats-reset"),
]
