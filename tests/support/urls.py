from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from tests.support.async_views import async_token

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("frameio/", include("frameio_oauth.urls")),
    path("async-token/<int:user_id>/", async_token),
]
