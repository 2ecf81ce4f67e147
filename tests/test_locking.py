"""The refresh rule under real concurrency, on PostgreSQL with committed transactions (a plain
TestCase's wrapping transaction would hide lock bugs): threads, separate processes, two sweeps
at once, and a worker killed mid-refresh."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from django.db import DatabaseError, OperationalError, connection, transaction
from django.test import Client, override_settings
from django.utils import timezone

from frameio_oauth import services
from frameio_oauth.exceptions import ProviderUnavailable
from frameio_oauth.models import OAuthToken
from tests.support.fake_provider import rotating_provider
from tests.support.pg_sessions import end_session, own_pid
from tests.support.servers import issued_by
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.standin import CONFIDENTIAL, Standin, sign_in_with_frameio
from tests.support.tokens import make_due

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent


def subprocess_env(oauth: dict[str, Any]) -> dict[str, str]:
    """Environment for a child process using this test's database and provider."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "FRAMEIO_TEST_PGDATABASE": connection.settings_dict["NAME"],
        "FRAMEIO_TEST_OAUTH_JSON": json.dumps(oauth),
    }


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_32_threads_and_4_processes_cause_exactly_one_refresh(
    client: Client, user: Any, standin: Standin
) -> None:
    config = standin.settings(CONFIDENTIAL)
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=config):
        sign_in_with_frameio(client, standin, "demo")
    token = OAuthToken.objects.get(user=user)
    old_access = token.access_token
    make_due(token)
    standin.reset_stats()

    start_at = time.time() + 4  # room for the processes to import Django
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.worker",
                "get-token",
                str(user.pk),
                str(start_at),
            ],
            cwd=ROOT,
            env=subprocess_env(config),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results: list[str] = []
    errors: list[BaseException] = []

    def caller(index: int) -> None:
        try:
            time.sleep(max(start_at - time.time(), 0))
            if index % 2:
                results.append(services.get_access_token(user))
            else:
                results.append(services.refresh(token.pk).access_token)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    # One override around all threads: override_settings swaps a global and is not
    # thread-safe to enter and leave from many threads at once.
    with override_settings(FRAMEIO_OAUTH=config):
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    outputs = [process.communicate(timeout=60) for process in processes]

    assert errors == []
    assert [process.returncode for process in processes] == [0, 0, 0, 0], outputs
    assert standin.stats().get("refresh_token") == 1
    new_access = OAuthToken.objects.get(pk=token.pk).access_token
    assert new_access != old_access
    assert results == [new_access] * 32
    assert [out.strip() for out, _ in outputs] == [sha(new_access)] * 4
    # The grant survived: no reuse was detected, so a later refresh still works.
    with override_settings(FRAMEIO_OAUTH=config):
        later = services.refresh(token.pk, force=True)
    assert standin.me(later.access_token).status_code == 200


def test_two_sweeps_at_once_refresh_each_of_500_tokens_exactly_once(
    django_user_model: Any,
) -> None:
    with rotating_provider() as (url, provider):
        provider.delay = 0.004  # keeps both sweeps busy long enough to overlap
        users = django_user_model.objects.bulk_create(
            [django_user_model(username=f"user{i}") for i in range(500)]
        )
        past = timezone.now() - timedelta(seconds=5)
        OAuthToken.objects.bulk_create(
            [
                OAuthToken(
                    user=user,
                    provider="frameio",
                    provider_user_id=f"fio-{user.pk}",
                    access_token=f"at-{user.pk}",
                    refresh_token=provider.issue(),
                    expires_at=past + timedelta(minutes=3),
                    next_refresh_at=past,
                )
                for user in users
            ]
        )
        command = [
            sys.executable,
            "-m",
            "django",
            "frameio_refresh_tokens",
            "--due",
            "--skip-checks",
        ]
        issued_by({**FRAMEIO_OAUTH, "TOKEN_URL": url})
        env = subprocess_env({"TOKEN_URL": url})
        sweeps = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [sweep.communicate(timeout=300)[0] for sweep in sweeps]

    assert [sweep.returncode for sweep in sweeps] == [0, 0], outputs
    refreshed = [int(re.search(r"refreshed (\d+)", out).group(1)) for out in outputs]
    assert sum(refreshed) == 500
    assert all(count > 0 for count in refreshed), "the two sweeps did not overlap"
    assert provider.requests == 500
    assert provider.reuses == 0
    stored = {token.refresh_token for token in OAuthToken.objects.all()}
    assert len(stored) == 500
    assert stored <= provider.live


def test_a_worker_killed_mid_refresh_leaves_the_row_unlocked_and_intact(user: Any) -> None:
    with rotating_provider() as (url, provider):
        original_refresh = provider.issue()
        token = OAuthToken.objects.create(
            user=user,
            provider="frameio",
            provider_user_id="fio-1",
            access_token="at-original",
            refresh_token=original_refresh,
            expires_at=timezone.now() + timedelta(minutes=2),
            next_refresh_at=timezone.now() - timedelta(seconds=1),
        )
        issued_by({**FRAMEIO_OAUTH, "TOKEN_URL": url})
        provider.stall_next = True
        worker = subprocess.Popen(
            [sys.executable, "-m", "django", "frameio_refresh_tokens", "--due", "--skip-checks"],
            cwd=ROOT,
            env=subprocess_env({"TOKEN_URL": url, "HTTP_TIMEOUT": 30}),
            stdout=subprocess.DEVNULL,
        )
        assert provider.arrived.wait(30), "the worker never reached the provider"
        with pytest.raises(DatabaseError), transaction.atomic():
            OAuthToken.objects.select_for_update(nowait=True).get(pk=token.pk)

        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                with transaction.atomic():
                    OAuthToken.objects.select_for_update(nowait=True).get(pk=token.pk)
                break
            except DatabaseError:
                assert time.monotonic() < deadline, "the dead worker's lock was never released"
                time.sleep(0.1)

        intact = OAuthToken.objects.get(pk=token.pk)
        assert (intact.access_token, intact.refresh_token) == ("at-original", original_refresh)
        assert intact.status == OAuthToken.Status.ACTIVE

        with override_settings(FRAMEIO_OAUTH={**_settings(), "TOKEN_URL": url}):
            summary = services.refresh_due()
    assert summary.refreshed == 1
    assert OAuthToken.objects.get(pk=token.pk).refresh_token != original_refresh


def _settings() -> dict[str, Any]:
    from django.conf import settings

    return dict(settings.FRAMEIO_OAUTH)


def test_an_on_demand_caller_waits_for_a_held_lock_only_so_long(user: Any) -> None:
    token = OAuthToken.objects.create(
        user=user,
        provider="frameio",
        provider_user_id="fio-1",
        access_token="at-original",
        refresh_token="rt-original",
        expires_at=timezone.now() + timedelta(minutes=2),
    )
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                OAuthToken.objects.select_for_update().get(pk=token.pk)
                held.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        # The wait is bounded by HTTP_TIMEOUT + LOCK_WAIT_SLACK (0.5 s + 5 s here).
        with override_settings(FRAMEIO_OAUTH={**_settings(), "HTTP_TIMEOUT": 0.5}):
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable, match="did not finish in time"):
                services.refresh(token.pk)
            waited = time.monotonic() - started
    finally:
        release.set()
        thread.join(timeout=10)
    assert 5 <= waited < 10
    assert OAuthToken.objects.get(pk=token.pk).access_token == "at-original"


def test_a_dropped_connection_is_not_taken_for_a_refresh_in_progress(
    user: Any, provider_http: responses.RequestsMock
) -> None:
    token = OAuthToken.objects.create(
        user=user,
        provider="frameio",
        provider_user_id="fio-1",
        access_token="at-original",
        refresh_token="rt-original",
        expires_at=timezone.now() + timedelta(minutes=2),
    )
    end_session(own_pid())
    # Not "busy" (which would wait and try again), and never ProviderUnavailable's "another
    # process is refreshing": the database error itself.
    with pytest.raises(OperationalError):
        services.refresh(token.pk)
    assert len(provider_http.calls) == 0
    assert OAuthToken.objects.get(pk=token.pk).refresh_token == "rt-original"
