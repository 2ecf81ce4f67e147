from __future__ import annotations

from django.apps import AppConfig


class StandinConfig(AppConfig):
    name = "example_project.standin"
    label = "standin"
    verbose_name = "Frame.io stand-in"
