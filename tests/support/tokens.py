"""Reading and arranging token rows behind the code under test's back."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from frameio_oauth.models import OAuthToken

# No row has this id.
MISSING_ID = 2_000_000_000


def stored(token: OAuthToken) -> OAuthToken:
    """The row of ``token`` as the database holds it now."""
    return OAuthToken.objects.get(pk=token.pk)


def make_due(token: OAuthToken) -> None:
    """Make the stored row due now, a minute before it expires."""
    now = timezone.now()
    OAuthToken.objects.filter(pk=token.pk).update(
        expires_at=now + timedelta(seconds=60), next_refresh_at=now - timedelta(seconds=1)
    )


def raw_ciphertexts(token_id: int) -> tuple[str | None, str | None]:
    """The access and refresh token columns as the database holds them, read with plain SQL."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token_ciphertext, refresh_token_ciphertext "
            "FROM frameio_oauth_oauthtoken WHERE id = %s",
            [token_id],
        )
        row = cursor.fetchone()
    assert row is not None
    return row[0], row[1]
