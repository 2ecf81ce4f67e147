from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FrameioOAuthConfig(AppConfig):
    name = "frameio_oauth"
    verbose_name = _("Frame.io OAuth")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their side effects: registering checks and signals, exactly once.
        from . import checks, receivers, signals  # noqa: F401

        # Revoke a user's grant at Frame.io before the user (and, by cascade, the row) goes.
        receivers.connect()
