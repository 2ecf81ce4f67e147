"""The packaged stand-in (``python -m frameio_oauth.standin``) itself: the shapes of the two
servers it plays, rotation with reuse protection in both, and its one-line failures."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from frameio_oauth.conf import PRESETS
from frameio_oauth.standin import Mode, client_settings
from frameio_oauth.standin.config import ConfigurationError, StandinConfig
from tests.support.standin import CONFIDENTIAL, Standin, running_standin

ROOT = Path(__file__).resolve().parent.parent
REDIRECT_URI = "http://testserver/frameio/callback/"
MODES = [Mode.IMS, Mode.LEGACY]


@pytest.fixture(scope="module")
def legacy_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    yield from running_standin(tmp_path_factory, {"demo": "demo-pw"}, mode=Mode.LEGACY)


@pytest.fixture(params=MODES, ids=[mode.value for mode in MODES])
def either_standin(request: pytest.FixtureRequest) -> Standin:
    name = "standin" if request.param is Mode.IMS else "legacy_standin"
    server: Standin = request.getfixturevalue(name)
    return server


def grant(standin: Standin, scopes: list[str]) -> dict[str, Any]:
    """A code grant of the confidential client, as the token endpoint answers it."""
    shape = standin.mode.shape
    query = {
        "response_type": "code",
        "client_id": CONFIDENTIAL["CLIENT_ID"],
        "redirect_uri": REDIRECT_URI,
        "scope": shape.scope_separator.join(scopes),
        "state": secrets.token_urlsafe(8),
    }
    callback = standin.consent(f"{standin.authorize_url}?{urlencode(query)}", "demo")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    return token_request(
        standin, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI
    ).json()


def token_request(standin: Standin, **form: str) -> requests.Response:
    return requests.post(
        standin.url + standin.mode.shape.token_path,
        data=form,
        auth=(CONFIDENTIAL["CLIENT_ID"], CONFIDENTIAL["CLIENT_SECRET"]),
        timeout=10,
    )


def offline_scopes(mode: Mode) -> list[str]:
    return ["openid", "offline_access"] if mode is Mode.IMS else ["account.read", "offline"]


def run_standin(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "FRAMEIO_STANDIN_DB": str(tmp_path / "standin.sqlite3"), **env}
    return subprocess.run(
        [sys.executable, "-m", "frameio_oauth.standin", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("mode", MODES, ids=[mode.value for mode in MODES])
def test_each_mode_plays_the_server_of_the_apps_matching_preset(mode: Mode) -> None:
    shape = mode.shape
    preset = PRESETS[shape.preset]
    for preset_url, path in [
        (preset.authorize_url, shape.authorize_path),
        (preset.token_url, shape.token_path),
        (preset.revoke_url, shape.revoke_path),
        (preset.userinfo_url, shape.userinfo_path),
    ]:
        assert urlsplit(preset_url).path == path
    assert set(preset.scopes) <= set(shape.scopes)
    assert preset.offline_scope in shape.offline_scopes
    assert preset.scope_separator == shape.scope_separator
    assert preset.userinfo_envelope == shape.userinfo_envelope


def test_by_default_it_plays_adobe_ims_and_the_legacy_variable_switches_it() -> None:
    assert StandinConfig.from_environ({}).mode is Mode.IMS
    assert StandinConfig.from_environ({"FRAMEIO_STANDIN_LEGACY": "1"}).mode is Mode.LEGACY
    assert StandinConfig.from_environ({"FRAMEIO_STANDIN_LEGACY": "0"}).mode is Mode.IMS


def test_its_database_defaults_to_the_users_data_folder(tmp_path: Path) -> None:
    config = StandinConfig.from_environ({"XDG_DATA_HOME": str(tmp_path)})
    assert config.db_path == tmp_path / "frameio-oauth" / "standin.sqlite3"


def test_a_users_entry_without_a_password_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="FRAMEIO_STANDIN_USERS entry 'alice'"):
        StandinConfig.from_environ({"FRAMEIO_STANDIN_USERS": "alice"})


def test_client_settings_point_a_site_at_the_standin_with_the_matching_preset() -> None:
    settings = client_settings("http://127.0.0.1:8001/", Mode.LEGACY)
    assert settings == {
        "PROVIDER": "frameio",
        "AUTHORIZE_URL": "http://127.0.0.1:8001/oauth2/auth",
        "TOKEN_URL": "http://127.0.0.1:8001/oauth2/token",
        "REVOKE_URL": "http://127.0.0.1:8001/oauth2/revoke",
        "USERINFO_URL": "http://127.0.0.1:8001/v2/me",
        "ISSUER": "http://127.0.0.1:8001",
    }


def test_in_ims_mode_the_legacy_paths_are_not_served(standin: Standin) -> None:
    assert requests.get(f"{standin.url}/oauth2/auth", timeout=5).status_code == 404
    assert requests.post(f"{standin.url}/oauth2/token", timeout=5).status_code == 404
    assert requests.get(f"{standin.url}/v2/me", timeout=5).status_code == 404


def test_in_legacy_mode_the_ims_paths_are_not_served(legacy_standin: Standin) -> None:
    assert requests.get(f"{legacy_standin.url}/ims/authorize/v2", timeout=5).status_code == 404
    assert requests.post(f"{legacy_standin.url}/ims/token/v3", timeout=5).status_code == 404
    assert requests.get(f"{legacy_standin.url}/v4/me", timeout=5).status_code == 404


def test_the_ims_token_answer_writes_the_granted_scopes_with_commas(standin: Standin) -> None:
    answer = grant(standin, ["openid", "email", "offline_access"])
    assert answer["scope"] == "openid,email,offline_access"
    assert answer["refresh_token"]


def test_the_legacy_token_answer_writes_the_granted_scopes_with_spaces(
    legacy_standin: Standin,
) -> None:
    answer = grant(legacy_standin, ["account.read", "offline"])
    assert answer["scope"] == "account.read offline"


def test_ims_user_info_wraps_the_user_in_a_data_envelope(standin: Standin) -> None:
    answer = standin.me(grant(standin, ["openid"])["access_token"])
    assert answer.status_code == 200
    assert set(answer.json()) == {"data"}
    assert answer.json()["data"]["email"] == "demo@example.com"


def test_legacy_user_info_is_the_bare_user(legacy_standin: Standin) -> None:
    answer = legacy_standin.me(grant(legacy_standin, ["account.read"])["access_token"])
    assert answer.status_code == 200
    assert answer.json()["email"] == "demo@example.com"


def test_an_ims_token_without_openid_cannot_read_the_user(standin: Standin) -> None:
    answer = standin.me(grant(standin, ["email"])["access_token"])
    assert answer.status_code == 401
    assert answer.json()["error"] == "insufficient_scope"


def test_without_an_offline_scope_no_refresh_token_is_issued(either_standin: Standin) -> None:
    scopes = ["openid"] if either_standin.mode is Mode.IMS else ["account.read"]
    answer = grant(either_standin, scopes)
    assert answer["access_token"]
    assert "refresh_token" not in answer


def test_every_refresh_rotates_the_refresh_token(either_standin: Standin) -> None:
    first = grant(either_standin, offline_scopes(either_standin.mode))
    second = token_request(
        either_standin, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert either_standin.me(second.json()["access_token"]).status_code == 200


def test_a_replayed_refresh_token_is_refused_and_revokes_the_whole_grant(
    either_standin: Standin,
) -> None:
    first = grant(either_standin, offline_scopes(either_standin.mode))
    rotated = token_request(
        either_standin, grant_type="refresh_token", refresh_token=first["refresh_token"]
    ).json()
    replay = token_request(
        either_standin, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    newest = token_request(
        either_standin, grant_type="refresh_token", refresh_token=rotated["refresh_token"]
    )
    assert newest.json()["error"] == "invalid_grant"
    assert either_standin.me(rotated["access_token"]).status_code == 401


def test_a_taken_port_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_standin(tmp_path, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"standin: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert result.stdout == ""


def test_a_bad_users_variable_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    result = run_standin(tmp_path, "--port", "0", FRAMEIO_STANDIN_USERS="alice")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "standin: FRAMEIO_STANDIN_USERS entry 'alice' is not username:password:email"
    ]


def test_without_django_oauth_toolkit_it_names_the_extra_to_install(tmp_path: Path) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    code = (
        "import sys; sys.modules['oauth2_provider'] = None; "
        "from frameio_oauth.standin.__main__ import main; sys.exit(main([]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "FRAMEIO_STANDIN_DB": str(tmp_path / "standin.sqlite3")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        'standin: it needs django-oauth-toolkit: pip install "frameio-oauth[standin]"'
    ]
