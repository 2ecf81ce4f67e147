"""The scope a refresh asks for, from what the grant holds and what is still configured."""

from __future__ import annotations

import re
from functools import lru_cache

from ..conf import conf
from ..models import OAuthToken

# Frame.io separates scopes with spaces, Adobe IMS with commas.
_SCOPE_SPLIT = re.compile(r"[\s,]+")


def refresh_scope(token: OAuthToken) -> str | None:
    """The configured scopes this grant holds, plus the preset's offline scope if it was
    granted; ``None`` (ask for the scope as granted) when that leaves nothing.

    RFC 6749 §6 forbids asking a refresh for more than was granted: a scope added to
    ``SCOPES`` since sign-in comes with the next sign-in, one removed is dropped here.
    """
    preset = conf.preset
    return _scope_for(token.scope, tuple(conf.scopes), preset.scope_separator, preset.offline_scope)


@lru_cache(maxsize=256)
def _scope_for(
    granted_text: str, configured: tuple[str, ...], separator: str, offline: str
) -> str | None:
    # Cached: a handful of distinct granted scopes cover every row.
    granted = set(_SCOPE_SPLIT.split(granted_text.strip())) - {""}
    kept = [scope for scope in configured if scope in granted and scope != offline]
    if not kept:
        # Nothing configured is recorded as granted (none recorded, or the provider's own
        # spelling): the grant as it stands.
        return None
    if offline in granted:
        kept.append(offline)
    return separator.join(kept)
