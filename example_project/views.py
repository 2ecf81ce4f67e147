from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from frameio_oauth import provider, services
from frameio_oauth.exceptions import (
    FrameioOAuthError,
    ProviderUnavailable,
    ReauthorizationRequired,
)
from frameio_oauth.models import OAuthToken


def home(request: HttpRequest) -> HttpResponse:
    """Shows the signed-in user's Frame.io link and, with a fresh token, who Frame.io says
    they are: the way a real site would call the Frame.io API."""
    token = None
    frameio_user = None
    problem = ""
    if request.user.is_authenticated:
        token = OAuthToken.objects.connected().filter(user_id=request.user.pk).first()
        if token is not None:
            try:
                frameio_user = provider.fetch_userinfo(services.get_access_token(request.user))
            except ReauthorizationRequired:
                problem = "Frame.io needs you to connect again."
            except ProviderUnavailable:
                problem = "Frame.io cannot be reached just now; the token is kept and retried."
            except FrameioOAuthError:
                # The exception's text is for logs (it names ids): people get a sentence.
                problem = "Frame.io did not answer as expected; the site's logs say why."
    return render(
        request,
        "example/home.html",
        {"token": token, "frameio_user": frameio_user, "problem": problem},
    )
