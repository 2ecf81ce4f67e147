"""The management commands: their output and their exit codes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import responses
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from frameio_oauth import services
from frameio_oauth.crypto import get_cipher
from frameio_oauth.exceptions import DecryptionError
from frameio_oauth.models import OAuthToken
from tests.support.frameio import NEW, REVOKE_URL, TOKEN_URL
from tests.support.settings import FRAMEIO_OAUTH, OLD_TEST_KEY, TEST_KEY

NEW_FIRST = {**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [OLD_TEST_KEY, TEST_KEY]}

pytestmark = pytest.mark.django_db


def test_the_sweep_prints_its_summary(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    make_token(user, next_refresh_at=timezone.now() - timedelta(seconds=1))
    provider_http.post(TOKEN_URL, json=NEW)
    call_command("frameio_refresh_tokens", "-v", "2")
    out = capsys.readouterr().out
    assert ": refreshed" in out
    assert "refreshed 1, skipped 0, failed 0, reauth 0, revoked 0" in out


def test_dry_run_lists_due_tokens_and_changes_nothing(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    token = make_token(user, next_refresh_at=timezone.now() - timedelta(seconds=1))
    call_command("frameio_refresh_tokens", "--dry-run")
    out = capsys.readouterr().out
    assert f"would refresh token {token.pk} of {user.username}" in out
    assert "1 token(s) due" in out
    assert len(provider_http.calls) == 0
    assert OAuthToken.objects.get(pk=token.pk).access_token == token.access_token


def test_user_and_force_refresh_one_fresh_token(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user)
    provider_http.post(TOKEN_URL, json=NEW)
    call_command("frameio_refresh_tokens", "--user", "alice", "--force")
    assert OAuthToken.objects.get(user=user).access_token == "AT-new"


def test_a_failed_refresh_is_a_command_error(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user)
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(CommandError, match="invalid_grant"):
        call_command("frameio_refresh_tokens", "--user", "alice", "--force")


def test_force_without_a_user_is_refused() -> None:
    with pytest.raises(CommandError, match="--force needs --user"):
        call_command("frameio_refresh_tokens", "--force")


def test_an_unknown_user_is_refused(user: Any) -> None:
    with pytest.raises(CommandError, match=r"has no Frame\.io token"):
        call_command("frameio_refresh_tokens", "--user", "alice")


@pytest.mark.parametrize("status", [OAuthToken.Status.REVOKED, OAuthToken.Status.REAUTH_REQUIRED])
def test_a_token_that_cannot_be_refreshed_is_refused_even_in_a_dry_run(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, status: str
) -> None:
    make_token(user, status=status)
    with pytest.raises(CommandError, match=f"is {status}: not refreshable"):
        call_command("frameio_refresh_tokens", "--user", "alice", "--dry-run")
    assert len(provider_http.calls) == 0


def test_generate_key_runs_before_any_key_is_configured(capsys: Any) -> None:
    # A new project runs this to get its first key, while E001 still fails the checks.
    without_keys = {k: v for k, v in FRAMEIO_OAUTH.items() if k != "ENCRYPTION_KEYS"}
    with override_settings(FRAMEIO_OAUTH=without_keys):
        # As manage.py runs it: with the system checks, unlike call_command.
        execute_from_command_line(["manage.py", "frameio_generate_key"])
    assert len(capsys.readouterr().out.strip()) == 44


def test_rotate_keys_skips_a_row_no_key_can_read_and_moves_the_rest(
    user: Any, other_user: Any, make_token: Any, capsys: Any
) -> None:
    readable = make_token(user, access_token="a1", refresh_token="r1")
    broken = make_token(other_user)
    # A ciphertext copied from another row does not decrypt here (the owner is in the AAD).
    OAuthToken.objects.filter(pk=broken.pk).update(
        access_token_ciphertext=readable.__dict__["access_token_ciphertext"]
    )
    with override_settings(FRAMEIO_OAUTH=NEW_FIRST):
        with pytest.raises(CommandError) as failed:
            call_command("frameio_rotate_keys")
        assert "1 rows re-encrypted" in capsys.readouterr().out
        assert f"left as they are: token ids {broken.pk}" in str(failed.value)
        assert OAuthToken.objects.get(pk=readable.pk).access_token == "a1"


def test_rotate_keys_exits_non_zero_naming_the_rows_it_could_not_read(
    user: Any, make_token: Any, capsys: Any
) -> None:
    broken = make_token(user)
    OAuthToken.objects.filter(pk=broken.pk).update(access_token_ciphertext="v1:nokey:AAAA")
    with override_settings(FRAMEIO_OAUTH=NEW_FIRST), pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "frameio_rotate_keys"])
    assert exited.value.code == 1
    assert f"token ids {broken.pk}" in capsys.readouterr().err


def test_rotate_keys_exits_zero_when_every_row_moved(
    user: Any, make_token: Any, capsys: Any
) -> None:
    make_token(user)
    with override_settings(FRAMEIO_OAUTH=NEW_FIRST):
        execute_from_command_line(["manage.py", "frameio_rotate_keys"])
    assert "1 rows re-encrypted" in capsys.readouterr().out


def test_rotate_keys_refuses_a_batch_size_below_one(capsys: Any) -> None:
    # It re-encrypted nothing and said so in green, with exit status 0.
    with pytest.raises(CommandError, match="at least 1"):
        call_command("frameio_rotate_keys", "--batch-size", "0")


def test_rotate_keys_exits_non_zero_when_a_secret_is_written_under_an_old_key_meanwhile(
    user: Any, other_user: Any, make_token: Any, capsys: Any
) -> None:
    # A process still on the old ENCRYPTION_KEYS writes a row the rotation has passed already.
    first, second = make_token(user), make_token(other_user)
    old_envelope = first.__dict__["access_token_ciphertext"]
    column = OAuthToken._meta.get_field("access_token").column
    table = OAuthToken._meta.db_table
    updates = []

    def old_writer_meanwhile(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if sql.startswith("UPDATE") and column in sql:
            updates.append(sql)
            if len(updates) == 2:  # the second batch: the first row is done by now
                execute(
                    f'UPDATE "{table}" SET "{column}" = %s WHERE "id" = %s',
                    [old_envelope, first.pk],
                    False,
                    context,
                )
        return result

    with (
        override_settings(FRAMEIO_OAUTH=NEW_FIRST),
        connection.execute_wrapper(old_writer_meanwhile),
    ):
        with pytest.raises(CommandError, match="still under other keys"):
            call_command("frameio_rotate_keys", "--batch-size", "1")
    assert second.pk and len(updates) == 2


def test_user_without_force_on_a_fresh_token_says_nothing_was_sent(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    token = make_token(user)
    call_command("frameio_refresh_tokens", "--user", "alice")
    assert f"token {token.pk} is not due" in capsys.readouterr().out
    assert len(provider_http.calls) == 0


def test_user_dry_run_says_whether_a_refresh_would_happen(
    user: Any, make_token: Any, capsys: Any
) -> None:
    token = make_token(user)
    call_command("frameio_refresh_tokens", "--user", "alice", "--dry-run")
    assert f"token {token.pk} is not due" in capsys.readouterr().out
    call_command("frameio_refresh_tokens", "--user", "alice", "--dry-run", "--force")
    assert f"would refresh token {token.pk}" in capsys.readouterr().out


def test_user_refresh_of_a_due_token_says_it_refreshed(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    token = make_token(user, expires_at=timezone.now() + timedelta(seconds=30))
    provider_http.post(TOKEN_URL, json=NEW)
    call_command("frameio_refresh_tokens", "--user", "alice")
    assert f"refreshed token {token.pk}" in capsys.readouterr().out


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(CommandError, match="must be 1 or more"):
        call_command("frameio_refresh_tokens", "--limit", "0")


def test_a_sweep_with_a_failed_refresh_exits_with_an_error_after_its_summary(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    make_token(user, next_refresh_at=timezone.now() - timedelta(seconds=1))
    provider_http.post(TOKEN_URL, status=503)
    with pytest.raises(CommandError, match=r"1 refresh\(es\) failed"):
        call_command("frameio_refresh_tokens")
    assert "refreshed 0, skipped 0, failed 1, reauth 0, revoked 0" in capsys.readouterr().out


def test_a_sweep_whose_only_problem_is_a_revoked_grant_succeeds(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    make_token(user, next_refresh_at=timezone.now() - timedelta(seconds=1))
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    call_command("frameio_refresh_tokens")
    assert "failed 0, reauth 1" in capsys.readouterr().out


def test_user_on_a_token_backing_off_says_so_rather_than_not_due(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    retry_at = timezone.now() + timedelta(seconds=20)
    token = make_token(
        user,
        expires_at=timezone.now() + timedelta(minutes=3),
        next_refresh_at=retry_at,
        failure_count=2,
        last_error="token endpoint answered HTTP 503",
    )
    call_command("frameio_refresh_tokens", "--user", "alice")
    out = capsys.readouterr().out
    assert f"token {token.pk} is backing off after 2 failed refresh(es) until {retry_at}" in out
    assert "HTTP 503" in out
    assert "not due" not in out
    assert len(provider_http.calls) == 0


def test_user_on_a_token_whose_backoff_has_ended_does_not_call_it_backing_off(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    # The backoff's retry time is the row's due time: once it has passed, the retry is due.
    token = make_token(
        user,
        expires_at=timezone.now() + timedelta(minutes=20),
        next_refresh_at=timezone.now() - timedelta(minutes=1),
        failure_count=1,
        last_error="token endpoint answered HTTP 503",
    )
    provider_http.post(TOKEN_URL, json=NEW)
    call_command("frameio_refresh_tokens", "--user", "alice")
    out = capsys.readouterr().out
    assert f"refreshed token {token.pk}" in out
    assert "backing off" not in out


def test_the_sweep_with_a_limit_refreshes_no_more_than_that(
    make_due_tokens: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    make_due_tokens(3)
    provider_http.post(TOKEN_URL, json=NEW)
    call_command("frameio_refresh_tokens", "--limit", "2")
    assert "refreshed 2, skipped 0, failed 0, reauth 0, revoked 0" in capsys.readouterr().out
    assert len(provider_http.calls) == 2


# --- keys -------------------------------------------------------------------------------------


def test_rotate_keys_moves_every_row_to_the_new_key(
    user: Any, other_user: Any, make_token: Any, capsys: Any
) -> None:
    make_token(user, access_token="a1", refresh_token="r1")
    make_token(other_user, access_token="a2", refresh_token=None)
    old_kid = get_cipher().primary_kid
    with override_settings(FRAMEIO_OAUTH=NEW_FIRST):
        new_kid = get_cipher().primary_kid
        call_command("frameio_rotate_keys", "--batch-size", "1")
        output = capsys.readouterr().out
        assert f"before: {old_kid}=3" in output
        assert f"after:  {new_kid}=3" in output
        assert "2 rows re-encrypted" in output
        assert services.count_key_ids() == {new_kid: 3}
        tokens = {t.user_id: t for t in OAuthToken.objects.all()}
        assert tokens[user.pk].access_token == "a1"
        assert tokens[user.pk].refresh_token == "r1"
        assert tokens[other_user.pk].refresh_token is None
    # The old key alone can no longer read the rows: they really moved.
    with pytest.raises(DecryptionError):
        OAuthToken.objects.get(user=user).access_token  # noqa: B018


def test_generate_key_prints_a_usable_key(capsys: Any) -> None:
    call_command("frameio_generate_key")
    key = capsys.readouterr().out.strip()
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [key]}):
        cipher = get_cipher()
        assert cipher.decrypt(cipher.encrypt("x", b"aad"), b"aad") == "x"


def test_a_sweep_whose_deferred_revocations_fail_exits_non_zero_and_counts_them(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, capsys: Any
) -> None:
    make_token(
        user,
        status=OAuthToken.Status.REVOKED,
        next_refresh_at=timezone.now() - timedelta(seconds=1),
        failure_count=1,
    )
    provider_http.post(REVOKE_URL, status=503)
    with pytest.raises(CommandError, match="1 revocation"):
        call_command("frameio_refresh_tokens")
    assert "revocations failed 1" in capsys.readouterr().out
