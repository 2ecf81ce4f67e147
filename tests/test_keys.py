"""Key rotation (services.rotate_encryption_keys): rows written under an old key still read,
and a rotation moves each row once. The command's output is in test_commands.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from frameio_oauth import services
from frameio_oauth.models import OAuthToken
from tests.support.settings import FRAMEIO_OAUTH, OLD_TEST_KEY, TEST_KEY

pytestmark = pytest.mark.django_db

NEW_FIRST = {**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [OLD_TEST_KEY, TEST_KEY]}


def test_old_rows_still_read_after_a_new_first_key_is_added(user: Any, make_token: Any) -> None:
    make_token(user, access_token="before-rotation")
    with override_settings(FRAMEIO_OAUTH=NEW_FIRST):
        assert OAuthToken.objects.get(user=user).access_token == "before-rotation"


def test_rotate_keys_twice_rewrites_nothing_the_second_time(user: Any, make_token: Any) -> None:
    make_token(user)
    with override_settings(FRAMEIO_OAUTH=NEW_FIRST):
        assert services.rotate_encryption_keys().rewritten == 1
        assert services.rotate_encryption_keys().rewritten == 0
