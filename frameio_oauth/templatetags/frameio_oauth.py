"""``{% load frameio_oauth %}``: the app's pages' filters, for a project's own pages too."""

from __future__ import annotations

from datetime import datetime

from django import template

from .. import relative_time

register = template.Library()


@register.filter
def ago(moment: datetime | None) -> str:
    """``{{ token.last_refreshed_at|ago }}``: "just now", "5 minutes ago"."""
    return relative_time.ago(moment)


@register.filter
def from_now(moment: datetime | None) -> str:
    """``{{ token.expires_at|from_now }}``: "in 2 hours"; a past moment reads as ``ago``."""
    return relative_time.from_now(moment)
