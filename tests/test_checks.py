from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from frameio_oauth import tasks
from frameio_oauth.checks import check_callback_url, check_settings, check_token_database
from frameio_oauth.services import LOCK_WAIT_SLACK, RECOVERY_BUDGET
from tests.support.settings import FRAMEIO_OAUTH

# The test settings sign in with legacy Frame.io, which W010 reports in every result: the tests
# of the other ids leave it out (ids_for), those of W010 read it (all_ids_for).
LEGACY = "frameio_oauth.W010"


def all_ids_for(**changes: Any) -> set[str]:
    """The check ids for the test settings with ``changes`` (``...`` removes a key)."""
    config = {**FRAMEIO_OAUTH, **changes}
    for key in [key for key, value in changes.items() if value is ...]:
        del config[key]
    with override_settings(FRAMEIO_OAUTH=config):
        return {message.id for message in check_settings(None)}


def ids_for(**changes: Any) -> set[str]:
    return all_ids_for(**changes) - {LEGACY}


def test_the_test_settings_pass_every_check_but_the_legacy_servers_w010() -> None:
    assert all_ids_for() == {LEGACY}


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
    # With the server's ISSUER, so that another AUTHORIZE_URL is only E005, not W009 too.
    assert ids_for(**{key: "http://frameio.example/x", "ISSUER": "http://frameio.example"}) == {
        "frameio_oauth.E005"
    }


def test_a_plain_http_url_in_debug_is_allowed() -> None:
    with override_settings(DEBUG=True):
        assert ids_for(TOKEN_URL="http://127.0.0.1:8001/oauth2/token") == set()


def test_an_unknown_provider_is_e006() -> None:
    assert ids_for(PROVIDER="frame-io") == {"frameio_oauth.E006"}


def test_scopes_without_offline_are_w001() -> None:
    assert ids_for(SCOPES=["account.read"]) == {"frameio_oauth.W001"}


def test_adobe_ims_offline_access_counts_as_offline() -> None:
    assert ids_for(PROVIDER="adobe-ims", SCOPES=["openid", "offline_access"]) == set()


def test_adobe_ims_with_the_legacy_offline_scope_is_w001() -> None:
    assert ids_for(PROVIDER="adobe-ims", SCOPES=["openid", "offline"]) == {"frameio_oauth.W001"}


def test_legacy_frameio_with_the_ims_offline_scope_is_w001() -> None:
    assert ids_for(SCOPES=["account.read", "offline_access"]) == {"frameio_oauth.W001"}


def test_scopes_as_one_string_pass_the_checks() -> None:
    assert ids_for(SCOPES="account.read offline") == set()


def test_scopes_as_one_string_without_offline_are_w001() -> None:
    assert ids_for(SCOPES="account.read") == {"frameio_oauth.W001"}


@pytest.mark.parametrize("scopes", [42, ["account.read", 7], {"offline": True}, ["", "offline"]])
def test_scopes_that_are_not_a_list_of_names_are_e007(scopes: Any) -> None:
    assert ids_for(SCOPES=scopes) == {"frameio_oauth.E007"}


@pytest.mark.parametrize("margin", ["soon", None, 0, -60, True, float("inf")])
def test_a_refresh_margin_that_is_not_a_positive_number_is_e008(margin: Any) -> None:
    assert ids_for(REFRESH_MARGIN=margin) == {"frameio_oauth.E008"}


@pytest.mark.parametrize("timeout", ["ten", None, 0, -1, float("nan"), float("inf"), False])
def test_an_http_timeout_that_is_not_a_positive_number_is_e009(timeout: Any) -> None:
    assert ids_for(HTTP_TIMEOUT=timeout) == {"frameio_oauth.E009"}


def test_a_refresh_margin_as_long_as_the_token_lifetime_is_w004() -> None:
    assert ids_for(REFRESH_MARGIN=3600) == {"frameio_oauth.W004"}


def test_a_refresh_margin_that_with_its_jitter_passes_half_the_lifetime_is_w004() -> None:
    # Lead and jitter (up to 360 s of 3,600) together are capped at half the lifetime: a
    # margin past 1,800 - 360 s changes nothing.
    assert ids_for(REFRESH_MARGIN=1441) == {"frameio_oauth.W004"}


def test_a_refresh_margin_that_with_its_jitter_stays_within_half_the_lifetime_is_fine() -> None:
    assert ids_for(REFRESH_MARGIN=1440) == set()


def test_an_hour_of_refresh_margin_is_fine_for_day_long_ims_tokens() -> None:
    assert ids_for(PROVIDER="adobe-ims", SCOPES=["offline_access"], REFRESH_MARGIN=3600) == set()


def too_long_for(task: Any) -> float:
    """The shortest HTTP_TIMEOUT whose worst-case refresh_token run reaches the task limit."""
    return (float(task.soft_time_limit) - LOCK_WAIT_SLACK - RECOVERY_BUDGET) / 2


def test_an_http_timeout_too_long_for_the_refresh_task_limit_is_w005() -> None:
    assert ids_for(HTTP_TIMEOUT=too_long_for(tasks.refresh_token)) == {"frameio_oauth.W005"}


def test_an_http_timeout_just_inside_the_refresh_task_limit_is_fine() -> None:
    assert ids_for(HTTP_TIMEOUT=too_long_for(tasks.refresh_token) - 0.5) == set()


def test_unknown_keys_are_w002() -> None:
    assert ids_for(REFRESH_MARGINE=60) == {"frameio_oauth.W002"}


def test_a_setting_that_is_not_a_dict_is_e000() -> None:
    with override_settings(FRAMEIO_OAUTH=["CLIENT_ID"]):
        assert [m.id for m in check_settings(None)] == ["frameio_oauth.E000"]


def test_atomic_requests_is_w003(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings

    monkeypatch.setitem(settings.DATABASES["default"], "ATOMIC_REQUESTS", True)
    assert ids_for() == {"frameio_oauth.W003"}


def test_an_unset_environment_variable_as_the_key_is_e002_not_e003() -> None:
    # os.environ.get("FRAMEIO_KEY") of an unset variable.
    assert ids_for(ENCRYPTION_KEYS=[None]) == {"frameio_oauth.E002"}


def test_a_client_secret_that_is_present_but_empty_is_w006() -> None:
    assert ids_for(CLIENT_SECRET="") == {"frameio_oauth.W006"}


def test_a_client_secret_of_none_from_an_unset_environment_variable_is_w006() -> None:
    assert ids_for(CLIENT_SECRET=None) == {"frameio_oauth.W006"}


def test_no_client_secret_key_at_all_is_a_quiet_public_client() -> None:
    assert ids_for(CLIENT_SECRET=...) == set()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, ["frameio_oauth.W007"]),
        ({"transaction_mode": "DEFERRED"}, ["frameio_oauth.W007"]),
        ({"transaction_mode": "IMMEDIATE"}, []),
    ],
)
def test_tokens_on_sqlite_need_immediate_transactions_w007(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, str], expected: list[str]
) -> None:
    from django.conf import settings

    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:", "OPTIONS": options}
    monkeypatch.setitem(settings.DATABASES, "default", sqlite)
    assert [message.id for message in check_token_database(None)] == expected


def test_tokens_on_postgresql_need_no_transaction_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings

    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}
    monkeypatch.setitem(settings.DATABASES, "default", postgres)
    assert check_token_database(None) == []


def test_a_urlconf_without_the_apps_urls_is_only_a_warning_w008() -> None:
    with override_settings(ROOT_URLCONF="tests.support.urls_without_frameio"):
        assert [(message.id, message.level) for message in check_callback_url(None)] == [
            ("frameio_oauth.W008", checks.WARNING)
        ]


def test_a_fixed_redirect_uri_needs_no_reversible_callback() -> None:
    fixed = {**FRAMEIO_OAUTH, "REDIRECT_URI": "https://site.example/cb/"}
    with override_settings(ROOT_URLCONF="tests.support.urls_without_frameio", FRAMEIO_OAUTH=fixed):
        assert check_callback_url(None) == []


def test_the_test_urlconf_reverses_the_callback() -> None:
    assert check_callback_url(None) == []


def test_another_authorize_url_without_an_issuer_is_w009() -> None:
    assert ids_for(AUTHORIZE_URL="https://idp.example/authorize") == {"frameio_oauth.W009"}


def test_another_authorize_url_with_its_issuer_is_fine() -> None:
    changes = {"AUTHORIZE_URL": "https://idp.example/authorize", "ISSUER": "https://idp.example"}
    assert ids_for(**changes) == set()


def test_the_presets_own_authorize_url_written_out_needs_no_issuer() -> None:
    preset_url = "https://ims-na1.adobelogin.com/ims/authorize/v2"
    changes = {"PROVIDER": "adobe-ims", "SCOPES": ["openid", "offline_access"]}
    assert ids_for(**changes, AUTHORIZE_URL=preset_url) == set()


def test_issuer_and_login_on_get_are_known_keys() -> None:
    assert ids_for(ISSUER="https://idp.example", LOGIN_ON_GET=True) == set()


# --- which server: the legacy one (W010), Adobe IMS without a secret (W011) ---------------------

IMS_SCOPES = ["openid", "email", "profile", "offline_access", "additional_info.roles"]


def messages_for(**changes: Any) -> dict[str, checks.CheckMessage]:
    config = {**FRAMEIO_OAUTH, **changes}
    for key in [key for key, value in changes.items() if value is ...]:
        del config[key]
    with override_settings(FRAMEIO_OAUTH=config):
        return {message.id: message for message in check_settings(None)}


def test_the_legacy_server_is_a_w010_warning_naming_its_end_of_support_and_the_way_out() -> None:
    warning = messages_for()[LEGACY]
    assert warning.level == checks.WARNING
    assert "ended on 2026-12-01" in warning.msg
    assert "applications.frame.io" in warning.msg
    assert "'adobe-ims'" in warning.hint
    assert "docs: migrating" in warning.hint


def test_the_legacy_server_is_w010_whatever_the_provider_setting() -> None:
    changes = {"PROVIDER": "adobe-ims", "SCOPES": IMS_SCOPES}
    legacy_token_url = "https://applications.frame.io/oauth2/token"
    assert all_ids_for(**changes, TOKEN_URL=legacy_token_url, ISSUER="https://x") == {LEGACY}


def test_the_legacy_preset_pointed_at_a_stand_in_is_not_w010() -> None:
    stand_in = {
        "AUTHORIZE_URL": "http://127.0.0.1:8001/oauth2/auth",
        "TOKEN_URL": "http://127.0.0.1:8001/oauth2/token",
        "ISSUER": "http://127.0.0.1:8001",
    }
    with override_settings(DEBUG=True):
        assert all_ids_for(**stand_in) == set()


def test_no_provider_key_at_all_is_frame_io_v4_and_passes_every_check() -> None:
    assert all_ids_for(PROVIDER=..., SCOPES=...) == set()


def test_a_public_client_on_adobe_ims_is_a_w011_warning_citing_adobe() -> None:
    warning = messages_for(PROVIDER=..., SCOPES=..., CLIENT_SECRET=...)["frameio_oauth.W011"]
    assert warning.level == checks.WARNING
    assert "Single-Page App and Native App" in warning.msg
    assert "no refresh tokens" in warning.msg
    assert "developer.adobe.com/developer-console/docs/guides/authentication/" in warning.hint


def test_a_public_client_on_adobe_ims_asking_for_offline_access_is_w011_alone() -> None:
    # No CLIENT_SECRET key at all (an empty one is W006), the preset's scopes.
    assert all_ids_for(PROVIDER="adobe-ims", SCOPES=..., CLIENT_SECRET=...) == {
        "frameio_oauth.W011"
    }


def test_a_public_client_on_adobe_ims_that_asks_for_no_offline_access_gets_no_warning() -> None:
    # The README's public variant: it expects no refresh token, so neither W011 nor W001.
    scopes = ["openid", "email", "profile", "additional_info.roles"]
    assert all_ids_for(PROVIDER="adobe-ims", SCOPES=scopes, CLIENT_SECRET=...) == set()


def test_a_confidential_client_on_adobe_ims_without_offline_access_is_still_w001() -> None:
    scopes = ["openid", "email", "profile", "additional_info.roles"]
    assert all_ids_for(PROVIDER="adobe-ims", SCOPES=scopes) == {"frameio_oauth.W001"}


def test_an_empty_client_secret_on_adobe_ims_is_w006_and_w011() -> None:
    assert all_ids_for(PROVIDER=..., SCOPES=..., CLIENT_SECRET="") == {
        "frameio_oauth.W006",
        "frameio_oauth.W011",
    }


def test_a_public_client_on_the_ims_preset_pointed_at_a_stand_in_is_not_w011() -> None:
    stand_in = {
        "AUTHORIZE_URL": "http://127.0.0.1:8001/ims/authorize/v2",
        "TOKEN_URL": "http://127.0.0.1:8001/ims/token/v3",
        "ISSUER": "http://127.0.0.1:8001",
    }
    with override_settings(DEBUG=True):
        assert all_ids_for(PROVIDER=..., SCOPES=..., CLIENT_SECRET=..., **stand_in) == set()


def test_a_public_client_on_the_legacy_server_is_not_w011() -> None:
    assert all_ids_for(CLIENT_SECRET=...) == {LEGACY}
