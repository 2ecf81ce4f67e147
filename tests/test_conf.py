from __future__ import annotations

from typing import Any

from django.test import override_settings

from frameio_oauth.conf import conf, origin
from tests.support.settings import FRAMEIO_OAUTH, TEST_KEY


def test_the_frameio_preset_uses_legacy_endpoints_and_space_separated_scopes() -> None:
    with override_settings(FRAMEIO_OAUTH={"PROVIDER": "frameio"}):
        assert conf.authorize_url == "https://applications.frame.io/oauth2/auth"
        assert conf.token_url == "https://applications.frame.io/oauth2/token"
        assert conf.userinfo_url == "https://api.frame.io/v2/me"
        assert conf.scope_string == "account.read offline"
        assert conf.preset.access_token_lifetime == 3600


def test_the_adobe_ims_preset_uses_ims_endpoints_and_comma_separated_scopes() -> None:
    with override_settings(FRAMEIO_OAUTH={"PROVIDER": "adobe-ims"}):
        assert conf.authorize_url == "https://ims-na1.adobelogin.com/ims/authorize/v2"
        assert conf.token_url == "https://ims-na1.adobelogin.com/ims/token/v3"
        assert conf.revoke_url == "https://ims-na1.adobelogin.com/ims/revoke"
        assert conf.userinfo_url == "https://api.frame.io/v4/me"
        assert conf.scope_string == "openid,email,profile,offline_access,additional_info.roles"


def test_every_url_can_be_overridden() -> None:
    urls = {
        "AUTHORIZE_URL": "https://idp.example/a",
        "TOKEN_URL": "https://idp.example/t",
        "REVOKE_URL": "https://idp.example/r",
        "USERINFO_URL": "https://api.example/me",
    }
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, **urls}):
        assert [conf.authorize_url, conf.token_url, conf.revoke_url, conf.userinfo_url] == list(
            urls.values()
        )


def test_settings_are_read_on_access_not_at_import() -> None:
    assert conf.client_id == "test-client"
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "CLIENT_ID": "other"}):
        assert conf.client_id == "other"


def test_no_secret_means_a_public_client() -> None:
    config = {key: value for key, value in FRAMEIO_OAUTH.items() if key != "CLIENT_SECRET"}
    with override_settings(FRAMEIO_OAUTH=config):
        assert conf.is_public_client
        assert conf.client_secret is None


def test_defaults_match_the_design() -> None:
    with override_settings(FRAMEIO_OAUTH={}):
        assert conf.pkce is True
        assert conf.refresh_margin == 300
        assert conf.http_timeout == 10
        assert conf.allow_signup is False
        assert conf.login_on_get is False
        assert conf.provider_name == "adobe-ims"
        assert conf.scopes == [
            "openid",
            "email",
            "profile",
            "offline_access",
            "additional_info.roles",
        ]


def test_scopes_given_as_one_space_separated_string_are_split_into_names() -> None:
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "SCOPES": "account.read  offline"}):
        assert conf.scopes == ["account.read", "offline"]
        assert conf.scope_string == "account.read offline"


def test_scopes_given_as_one_comma_separated_string_are_split_into_names() -> None:
    config = {**FRAMEIO_OAUTH, "PROVIDER": "adobe-ims", "SCOPES": "openid, offline_access"}
    with override_settings(FRAMEIO_OAUTH=config):
        assert conf.scopes == ["openid", "offline_access"]
        assert conf.scope_string == "openid,offline_access"


def test_the_adobe_ims_preset_expects_the_issuer_ims_publishes() -> None:
    with override_settings(FRAMEIO_OAUTH={"PROVIDER": "adobe-ims"}):
        assert conf.issuer == "https://ims-na1.adobelogin.com"


def test_the_legacy_preset_has_no_issuer_to_compare_with() -> None:
    with override_settings(FRAMEIO_OAUTH={"PROVIDER": "frameio"}):
        assert conf.issuer is None


def test_the_issuer_setting_overrides_the_presets() -> None:
    config = {"PROVIDER": "adobe-ims", "ISSUER": "https://ims-eu.example"}
    with override_settings(FRAMEIO_OAUTH=config):
        assert conf.issuer == "https://ims-eu.example"


def test_another_authorize_url_leaves_the_issuer_unknown_without_the_issuer_setting() -> None:
    config = {"PROVIDER": "adobe-ims", "AUTHORIZE_URL": "https://idp.example/authorize"}
    with override_settings(FRAMEIO_OAUTH=config):
        assert conf.authorize_url_overridden
        assert conf.issuer is None


def test_the_presets_own_authorize_url_written_out_keeps_its_issuer() -> None:
    config = {
        "PROVIDER": "adobe-ims",
        "AUTHORIZE_URL": "https://ims-na1.adobelogin.com/ims/authorize/v2",
    }
    with override_settings(FRAMEIO_OAUTH=config):
        assert not conf.authorize_url_overridden
        assert conf.issuer == "https://ims-na1.adobelogin.com"


def test_a_single_encryption_key_given_as_a_string_is_a_list_of_that_one_key() -> None:
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": TEST_KEY}):
        assert conf.encryption_keys == [TEST_KEY]


def server_for(**changes: Any) -> str:
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, **changes}):
        return conf.authorization_server


def test_the_legacy_servers_tokens_are_known_by_its_origin_as_it_publishes_no_issuer() -> None:
    assert server_for() == "https://applications.frame.io"


def test_adobe_ims_tokens_are_known_by_the_issuer_it_publishes() -> None:
    assert server_for(PROVIDER="adobe-ims") == "https://ims-na1.adobelogin.com"


def test_the_issuer_setting_names_the_server_wherever_the_urls_point() -> None:
    changes = {"TOKEN_URL": "http://127.0.0.1:8001/oauth2/token", "ISSUER": "http://standin"}
    assert server_for(**changes) == "http://standin"


def test_a_token_url_pointed_elsewhere_names_another_server_by_its_origin() -> None:
    changes = {"PROVIDER": "adobe-ims", "TOKEN_URL": "https://IMS.example:443/ims/token/v3"}
    assert server_for(**changes) == "https://ims.example"


def test_with_an_authorize_url_pointed_elsewhere_the_token_urls_origin_names_the_server() -> None:
    changes = {"PROVIDER": "adobe-ims", "AUTHORIZE_URL": "https://idp.example/authorize"}
    assert server_for(**changes) == "https://ims-na1.adobelogin.com"
    assert server_for(**changes, TOKEN_URL="https://idp.example/token") == "https://idp.example"


def test_the_presets_own_token_url_written_out_is_the_same_server() -> None:
    changes = {"PROVIDER": "adobe-ims", "TOKEN_URL": "https://ims-na1.adobelogin.com/ims/token/v3"}
    assert server_for(**changes) == "https://ims-na1.adobelogin.com"


def test_an_origin_keeps_a_port_that_is_not_the_schemes_default() -> None:
    assert origin("http://user:pw@127.0.0.1:8001/oauth2/token?x=1") == "http://127.0.0.1:8001"
    assert origin("http://127.0.0.1:80/t") == "http://127.0.0.1"
