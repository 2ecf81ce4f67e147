"""A local stand-in for Frame.io's authorization server and user-info API, built on
django-oauth-toolkit: ``python -m frameio_oauth.standin`` (``pip install
"frameio-oauth[standin]"``). For demos and tests on loopback, never for production.

Import-light on purpose: the settings module lives in this package, so nothing imported here
may touch Django or django-oauth-toolkit.
"""

from __future__ import annotations

from .modes import Mode, Shape, client_settings

__all__ = ["Mode", "Shape", "client_settings"]
