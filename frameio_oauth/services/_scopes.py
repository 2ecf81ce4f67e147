"""The scope a refresh asks for, from what was configured and what the grant holds."""

from __future__ import annotations

import re
from functools import lru_cache

from ..conf import conf
from ..models import OAuthToken

# Frame.io separates scopes with spaces, Adobe IMS with commas.
_SCOPE_SPLIT = re.compile(r"[\s,]+")


def refresh_scope(token: OAuthToken) -> str:
    """The scope a refresh asks for: the configured scopes that this grant holds, and the
    offline scope.

    RFC 6749 §6 forbids asking a refresh for more than the user granted, so a scope added to
    ``SCOPES`` after someone signed in must not be asked for: every refresh of their grant
    would be refused with invalid_scope. It comes with their next sign-in. A scope removed
    from ``SCOPES`` is dropped here. The offline scope is always asked for: holding a refresh
    token means it was granted, even if the provider left it out of the scope it echoed, and
    a provider that issues refresh tokens only for it would otherwise stop rotating them.
    """
    preset = conf.preset
    return _scope_for(token.scope, tuple(conf.scopes), preset.scope_separator, preset.offline_scope)


@lru_cache(maxsize=256)
def _scope_for(granted_text: str, configured: tuple[str, ...], separator: str, offline: str) -> str:
    # Cached: a handful of distinct granted scopes cover every row.
    granted = [scope for scope in _SCOPE_SPLIT.split(granted_text.strip()) if scope]
    if not granted:
        # Nothing recorded to go by: what we asked for at sign-in.
        return separator.join(configured)
    kept = [scope for scope in configured if scope in granted and scope != offline]
    if not kept:
        # The echo names none of the configured scopes (renamed, or a provider's own
        # spelling): ask for exactly what it says was granted rather than for less.
        kept = [scope for scope in granted if scope != offline]
    return separator.join([*kept, offline])
