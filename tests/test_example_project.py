"""The example project's own promises: its checks are clean, in development and, with the
production environment a deployment would set, under ``check --deploy``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
