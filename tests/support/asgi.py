"""The test project as an ASGI application, for a real server (tests/test_async.py)."""

from __future__ import annotations

from django.core.asgi import get_asgi_application

application = get_asgi_application()
