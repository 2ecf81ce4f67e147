"""The example project's own promises: its checks are clean, in development and, with the
production environment a deployment would set, under ``check --deploy``; it speaks Frame.io
V4 to the stand-in (legacy on request) and shows a background refresh within five minutes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from example_project.run import DEMO_ACCESS_TOKEN_SECONDS
from frameio_oauth import services

ROOT = Path(__file__).resolve().parent.parent


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment.update(EXAMPLE_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def example_settings(tmp_path: Path, **env: str) -> dict[str, Any]:
    """The example's FRAMEIO_OAUTH (keys left out) and beat schedule, as its processes see
    them."""
    code = (
        "import json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'example_project.settings'; "
        "from django.conf import settings as s; "
        "oauth = {k: v for k, v in s.FRAMEIO_OAUTH.items() if k != 'ENCRYPTION_KEYS'}; "
        "print(json.dumps({'FRAMEIO_OAUTH': oauth, 'BEAT': s.CELERY_BEAT_SCHEDULE}))"
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment.update(EXAMPLE_VAR_DIR=str(tmp_path), **env)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    settings: dict[str, Any] = json.loads(result.stdout)
    return settings


def test_the_example_speaks_frameio_v4_to_the_standin_by_default(tmp_path: Path) -> None:
    oauth = example_settings(tmp_path)["FRAMEIO_OAUTH"]
    assert oauth["PROVIDER"] == "adobe-ims"
    assert oauth["AUTHORIZE_URL"] == "http://127.0.0.1:8001/ims/authorize/v2"
    assert oauth["TOKEN_URL"] == "http://127.0.0.1:8001/ims/token/v3"
    assert oauth["USERINFO_URL"] == "http://127.0.0.1:8001/v4/me"
    assert oauth["ISSUER"] == "http://127.0.0.1:8001"
    # A confidential client: Adobe gives refresh tokens to "OAuth Web App" credentials.
    assert oauth["CLIENT_SECRET"]


def test_the_legacy_switch_points_the_example_at_the_legacy_standin(tmp_path: Path) -> None:
    oauth = example_settings(tmp_path, FRAMEIO_STANDIN_LEGACY="1", FRAMEIO_STANDIN_PORT="9101")[
        "FRAMEIO_OAUTH"
    ]
    assert oauth["PROVIDER"] == "frameio"
    assert oauth["AUTHORIZE_URL"] == "http://127.0.0.1:9101/oauth2/auth"
    assert oauth["USERINFO_URL"] == "http://127.0.0.1:9101/v2/me"


def test_the_demo_refreshes_a_token_in_the_background_within_five_minutes_of_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.settings import TEST_KEY

    example = example_settings(tmp_path)
    sweep_every = example["BEAT"]["frameio-oauth-refresh-due"]["schedule"]
    # No jitter: the latest time the token can come due.
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    signed_in = timezone.now()
    with override_settings(
        FRAMEIO_OAUTH={**example["FRAMEIO_OAUTH"], "ENCRYPTION_KEYS": [TEST_KEY]}
    ):
        due = services.next_refresh_time(signed_in, DEMO_ACCESS_TOKEN_SECONDS)
    # The first sweep at or after that moment refreshes it.
    refreshed_by = due + timedelta(seconds=sweep_every)
    assert refreshed_by <= signed_in + timedelta(minutes=5)
    assert refreshed_by < signed_in + timedelta(seconds=DEMO_ACCESS_TOKEN_SECONDS)


def test_the_example_passes_every_check_in_development(tmp_path: Path) -> None:
    result = manage(tmp_path, "check", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_example_passes_check_deploy_when_configured_for_production(tmp_path: Path) -> None:
    result = manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="x" * 20 + "production-secret-key-with-enough-entropy-0123456789",
        DJANGO_ALLOWED_HOSTS="app.example.com",
        FRAMEIO_CLIENT_ID="client",
        FRAMEIO_CLIENT_SECRET="secret",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_pointing_production_at_a_plain_http_provider_fails_the_checks(tmp_path: Path) -> None:
    result = manage(tmp_path, "check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" * 60)
    assert result.returncode != 0
    assert "frameio_oauth.E005" in result.stderr


@pytest.mark.django_db
def test_the_migrations_match_the_models() -> None:
    from django.core.management import call_command

    call_command("makemigrations", "frameio_oauth", "--check", "--dry-run", verbosity=0)
