"""Sending frameio_oauth's signals: a receiver that raises is logged, never raised.

By the time a signal goes out the refresh, grant or removal it announces is committed; a
receiver's bug must not turn that into an error for the caller, nor stop a sweep (and the
deferred revocations behind it) at the first row it announces.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

from .. import signals
from ..models import OAuthToken

logger = logging.getLogger("frameio_oauth.services")


def send(signal: Signal, **kwargs: Any) -> None:
    """``signal.send_robust(sender=OAuthToken, **kwargs)``, each receiver's exception logged."""
    for receiver, outcome in signal.send_robust(sender=OAuthToken, **kwargs):
        if isinstance(outcome, Exception):
            logger.exception(
                "a receiver of frameio_oauth's %s signal (%s) raised; what it announces stands",
                _name(signal),
                getattr(receiver, "__qualname__", type(receiver).__qualname__),
                exc_info=outcome,
            )


def _name(signal: Signal) -> str:
    return next(
        (name for name, value in vars(signals).items() if value is signal), "unknown signal"
    )
