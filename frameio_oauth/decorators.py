"""View decorators the app's views and its admin share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction

_View = TypeVar("_View", bound=Callable[..., Any])


def non_atomic_requests_everywhere(view: _View) -> _View:
    """``transaction.non_atomic_requests`` for every database alias, not only ``default``:
    tokens live on whatever alias the project's routers choose for them, and a refresh or
    revocation must not run inside a request transaction on any of them."""
    for alias in settings.DATABASES:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view
