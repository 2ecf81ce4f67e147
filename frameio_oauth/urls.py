from __future__ import annotations

from django.urls import path

from . import views

app_name = "frameio_oauth"

urlpatterns = [
    path("login/", views.login, name="login"),
    path("callback/", views.callback, name="callback"),
    path("connected/", views.connected, name="connected"),
    path("disconnect/", views.disconnect, name="disconnect"),
    path("sign-in/", views.sign_in, name="sign_in"),
]
