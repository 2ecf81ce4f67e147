"""A moment as a person reads it at a glance: "just now", "5 minutes ago", "in 2 hours".

Django's ``timesince`` and ``timeuntil`` say "0 minutes" for anything under a minute and for
every moment on the wrong side of now (a clock a second ahead, a token that just expired).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext

# Below this, a count of minutes would read "0 minutes".
MINUTE = timedelta(minutes=1)


def ago(moment: datetime | None, now: datetime | None = None, *, depth: int = 2) -> str:
    """How long ago ``moment`` was; "just now" under a minute, and for a moment a little in
    the future (another server's clock)."""
    if moment is None:
        return ""
    now = now or timezone.now()
    if now - moment < MINUTE:
        return gettext("just now")
    return gettext("%(time)s ago") % {"time": timesince(moment, now, depth=depth)}


def from_now(moment: datetime | None, now: datetime | None = None, *, depth: int = 2) -> str:
    """How soon ``moment`` comes: "in 5 minutes", "in less than a minute"; a moment already
    past reads as :func:`ago` does."""
    if moment is None:
        return ""
    now = now or timezone.now()
    if moment <= now:
        return ago(moment, now, depth=depth)
    if moment - now < MINUTE:
        return gettext("in less than a minute")
    return gettext("in %(time)s") % {"time": timeuntil(moment, now, depth=depth)}
