"""Which authorization server issued a test's rows, for tests whose loopback server plays the
provider: a row is only ever refreshed or revoked at the server that issued it."""

from __future__ import annotations

from typing import Any

from django.test import override_settings

from frameio_oauth.conf import conf
from frameio_oauth.models import OAuthToken


def server_of(oauth: dict[str, Any]) -> str:
    """The authorization server that the ``FRAMEIO_OAUTH`` dict ``oauth`` names."""
    with override_settings(FRAMEIO_OAUTH=oauth):
        return conf.authorization_server


def issued_by(oauth: dict[str, Any]) -> None:
    """Every stored row, as if the server ``oauth`` names had issued it."""
    OAuthToken.objects.update(authorization_server=server_of(oauth))
