"""The test project's Celery app, configured from Django settings like a real project's."""

from __future__ import annotations

from celery import Celery

app = Celery("frameio_oauth_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.set_default()
