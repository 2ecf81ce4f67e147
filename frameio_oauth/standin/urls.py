from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path
from oauth2_provider import views as oauth2_views

from . import views
from .config import current

_shape = current().mode.shape


def _route(url_path: str) -> str:
    return url_path.removeprefix("/")


# The paths of the server it plays (Adobe IMS and api.frame.io/v4, or applications.frame.io and
# api.frame.io/v2), all on one origin; the other server's paths are not served.
urlpatterns = [
    path("", views.index_view, name="index"),
    path(_route(_shape.authorize_path), oauth2_views.AuthorizationView.as_view(), name="authorize"),
    path(_route(_shape.token_path), views.CountingTokenView.as_view(), name="token"),
    path(_route(_shape.revoke_path), oauth2_views.RevokeTokenView.as_view(), name="revoke"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(_route(_shape.userinfo_path), views.MeView.as_view(), name="me"),
    path("_standin/stats", views.stats_view, name="stats"),
    path("_standin/stats/reset", views.stats_reset_view, name="stats-reset"),
]
