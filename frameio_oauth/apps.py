from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FrameioOAuthConfig(AppConfig):
    name = "frameio_oauth"
    verbose_name = _("Frame.io OAuth")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their side effects: registering checks and signals, exactly once.
        from . import checks, receivers, services, signals, telemetry  # noqa: F401

        # Revoke a user's grant at Frame.io before the user (and, by cascade, the row) goes.
        receivers.connect()
        # Gauges read from the token table when a metric reader collects; without the otel
        # extra, nothing.
        telemetry.observe_backlog(_backlog, services.revocations_pending)


def _backlog() -> tuple[int, float | None]:
    from . import services

    found = services.backlog()
    return found.overdue, found.oldest_overdue_seconds
