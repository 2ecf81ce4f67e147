"""A database router for tests/test_routing.py: tokens live on the ``tokens`` alias."""

from __future__ import annotations

from typing import Any

from frameio_oauth.models import OAuthToken


class TokensOnTheirOwnAlias:
    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        return "tokens" if model is OAuthToken else None

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return "tokens" if model is OAuthToken else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True
