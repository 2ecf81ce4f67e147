from __future__ import annotations

from django.apps import AppConfig


class StandinConfig(AppConfig):
    name = "frameio_oauth.standin"
    label = "standin"
    verbose_name = "Frame.io stand-in"
