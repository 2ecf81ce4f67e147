from __future__ import annotations

import threading
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from oauth2_provider.views import ProtectedResourceView, TokenView
from oauth2_provider.www_authenticate import build_bearer_challenge
from oauthlib.common import Request as OAuthlibRequest

from . import stats
from .config import DEFAULT_USERS, current, parse_users

# uuid5 of the username, not the primary key: ids then survive a wiped stand-in database, so
# a client site that kept its users still matches them after the stand-in is recreated.
_USER_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://standin.invalid/users")

_token_endpoint_lock = threading.Lock()


def stable_user_id(user: AbstractBaseUser) -> str:
    return str(uuid.uuid5(_USER_ID_NAMESPACE, user.get_username()))


def user_payload(user: Any) -> dict[str, str]:
    return {
        "id": stable_user_id(user),
        "email": user.email,
        "name": user.get_full_name() or user.get_username(),
    }


class CountingTokenView(TokenView):
    """DOT's token endpoint, counting requests by grant type for /_standin/stats.

    Inherits DOT's csrf_exempt dispatch: clients post here without a browser session.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        stats.record_token_request(request.POST.get("grant_type", ""))
        # oauthlib checks a refresh token before DOT opens its transaction, so concurrent
        # refreshes of one token raced: early ones all got the same rotated pair, later ones
        # tripped reuse protection, and the outcome depended on timing. One token request at
        # a time makes it deterministic: the first wins, every other is invalid_grant and
        # revokes the family. SQLite serialises the writes anyway, so little is lost.
        with _token_endpoint_lock:
            response: HttpResponse = super().post(request, *args, **kwargs)
        return response


class MeView(ProtectedResourceView):
    """Bearer-protected user info, in the shape of the server the stand-in plays."""

    def verify_request(self, request: HttpRequest) -> tuple[bool, OAuthlibRequest]:
        valid, oauthlib_request = super().verify_request(request)
        # DOT's required_scopes means "all of"; the legacy server takes either of its two.
        accepted = current().mode.shape.userinfo_scopes
        if valid and not accepted & set(oauthlib_request.scopes or ()):
            oauthlib_request.oauth2_error = {
                "error": "insufficient_scope",
                "error_description": f"The token needs scope {' or '.join(sorted(accepted))}.",
            }
            return False, oauthlib_request
        return valid, oauthlib_request

    def unauthenticated_response(
        self, request: HttpRequest, oauthlib_request: OAuthlibRequest | None = None
    ) -> HttpResponse:
        error = getattr(oauthlib_request, "oauth2_error", None) or {
            # DOT sets no error when the header is simply missing.
            "error": "invalid_token",
            "error_description": "A valid bearer token is required.",
        }
        # 401 for every refusal (insufficient scope included): what the client treats as
        # "this token is no good" is all a stand-in needs to signal.
        response = JsonResponse(dict(error), status=401)
        response["WWW-Authenticate"] = build_bearer_challenge(
            request, oauth2_error=error, resource_metadata_url=None
        )
        return response

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        payload: dict[str, Any] = user_payload(request.resource_owner)  # type: ignore[attr-defined]
        envelope = current().mode.shape.userinfo_envelope
        return JsonResponse({envelope: payload} if envelope else payload)


@require_GET
def stats_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(stats.snapshot())


@csrf_exempt
@require_POST
def stats_reset_view(request: HttpRequest) -> JsonResponse:
    stats.reset()
    return JsonResponse(stats.snapshot())


@require_GET
def index_view(request: HttpRequest) -> HttpResponse:
    return render(request, "standin/index.html")


def standin_context(request: HttpRequest) -> dict[str, Any]:
    """Every page says which server the stand-in plays; the sign-in page names the demo
    account while it is the only one."""
    config = current()
    return {
        "standin_shape": config.mode.shape,
        "standin_demo_account": config.users == parse_users(DEFAULT_USERS),
    }
