from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from frameio_oauth.checks import check_settings
from tests.settings import FRAMEIO_OAUTH


def ids_for(**changes: Any) -> set[str]:
    config = {**FRAMEIO_OAUTH, **changes}
    for key in [key for key, value in changes.items() if value is ...]:
        del config[key]
    with override_settings(FRAMEIO_OAUTH=config):
        return {message.id for message in check_settings(None)}


def test_the_test_settings_pass_every_check() -> None:
    assert ids_for() == set()


def test_a_missing_client_id_is_e001() -> None:
    assert ids_for(CLIENT_ID=...) == {"frameio_oauth.E001"}


def test_no_encryption_key_is_e002() -> None:
    assert ids_for(ENCRYPTION_KEYS=[]) == {"frameio_oauth.E002"}


def test_a_malformed_encryption_key_is_e003() -> None:
    assert ids_for(ENCRYPTION_KEYS=[FRAMEIO_OAUTH["ENCRYPTION_KEYS"][0], "short"]) == {
        "frameio_oauth.E003"
    }


def test_a_public_client_without_pkce_is_e004() -> None:
    assert ids_for(CLIENT_SECRET=..., PKCE=False) == {"frameio_oauth.E004"}


def test_a_confidential_client_without_pkce_is_fine() -> None:
    assert ids_for(PKCE=False) == set()


@pytest.mark.parametrize(
    "key", ["AUTHORIZE_URL", "TOKEN_URL", "REVOKE_URL", "USERINFO_URL", "REDIRECT_URI"]
)
def test_a_plain_http_url_outside_debug_is_e005(key: str) -> None:
    assert ids_for(**{key: "http://frameio.example/x"}) == {"frameio_oauth.E005"}


def test_a_plain_http_url_in_debug_is_allowed() -> None:
    with override_settings(DEBUG=True):
        assert ids_for(TOKEN_URL="http://127.0.0.1:8001/oauth2/token") == set()


def test_an_unknown_provider_is_e006() -> None:
    assert ids_for(PROVIDER="frame-io") == {"frameio_oauth.E006"}


def test_scopes_without_offline_are_w001() -> None:
    assert ids_for(SCOPES=["account.read"]) == {"frameio_oauth.W001"}


def test_adobe_ims_offline_access_counts_as_offline() -> None:
    assert ids_for(PROVIDER="adobe-ims", SCOPES=["openid", "offline_access"]) == set()


def test_unknown_keys_are_w002() -> None:
    assert ids_for(REFRESH_MARGINE=60) == {"frameio_oauth.W002"}


def test_a_setting_that_is_not_a_dict_is_e000() -> None:
    with override_settings(FRAMEIO_OAUTH=["CLIENT_ID"]):
        assert [m.id for m in check_settings(None)] == ["frameio_oauth.E000"]


def test_atomic_requests_is_w003(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings

    monkeypatch.setitem(settings.DATABASES["default"], "ATOMIC_REQUESTS", True)
    assert ids_for() == {"frameio_oauth.W003"}
