"""The old home of the Frame.io API session; it lives in :mod:`frameio_oauth.api` now. Kept so
that ``from frameio_oauth.http import session_for`` goes on working."""

from __future__ import annotations

from .api import FrameioAuth, FrameioSession, api_origins, origin_of, session_for

__all__ = ["FrameioAuth", "FrameioSession", "api_origins", "origin_of", "session_for"]
