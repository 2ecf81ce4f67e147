"""An async view for the ASGI tests: hands out a user's access token through
``services.aget_access_token``, as a project's async view would (its fingerprint, not the token)."""

from __future__ import annotations

import hashlib

from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse

from frameio_oauth import services


async def async_token(request: HttpRequest, user_id: int) -> JsonResponse:
    user = await get_user_model().objects.aget(pk=user_id)
    token = await services.aget_access_token(user)
    return JsonResponse({"token": hashlib.sha256(token.encode()).hexdigest()[:16]})
