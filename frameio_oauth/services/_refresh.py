"""The refresh rule: one row, one refresh at a time, never an old refresh token twice.

Every function here that touches a token row locks it first (``select_for_update``): NOWAIT
then a bounded wait for on-demand callers, SKIP LOCKED for the sweep. If the save or the
commit fails after the provider answered, ``_transaction`` saves the answer in a second
transaction rather than forget a rotated refresh token.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import Error
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import provider, signals
from ..conf import conf
from ..exceptions import (
    DecryptionError,
    FrameioOAuthError,
    NotConnected,
    ProviderError,
    ProviderUnavailable,
    ReauthorizationRequired,
    RefreshInsideTransaction,
)
from ..models import OAuthToken
from . import _notify, _revocations, _rows, _transaction
from ._backoff import retry_time
from ._schedule import apply_tokens, is_due
from ._scopes import refresh_scope

logger = logging.getLogger("frameio_oauth.services")

# On-demand callers wait for a refresh in progress at most this long beyond HTTP_TIMEOUT.
LOCK_WAIT_SLACK = 5.0
SECRET_FIELDS = ("access_token", "refresh_token")
# What a successful refresh changes; the UPDATE names these columns only.
REFRESHED_FIELDS = [
    *SECRET_FIELDS,
    "token_type",
    "scope",
    "expires_at",
    "next_refresh_at",
    "last_refreshed_at",
    "failure_count",
    "last_error",
    "updated_at",
]


class Outcome(enum.Enum):
    REFRESHED = "refreshed"
    NOT_DUE = "not_due"
    LOCKED = "locked"
    FAILED = "failed"
    REAUTH = "reauth"


@dataclass
class RefreshSummary:
    refreshed: int = 0
    skipped: int = 0
    failed: int = 0
    reauth: int = 0
    # Disconnected grants whose deferred revocation went through in this sweep.
    revoked: int = 0

    def add(self, outcome: Outcome) -> None:
        if outcome is Outcome.REFRESHED:
            self.refreshed += 1
        elif outcome is Outcome.FAILED:
            self.failed += 1
        elif outcome is Outcome.REAUTH:
            self.reauth += 1
        else:
            self.skipped += 1

    def as_dict(self) -> dict[str, int]:
        return {
            "refreshed": self.refreshed,
            "skipped": self.skipped,
            "failed": self.failed,
            "reauth": self.reauth,
            "revoked": self.revoked,
        }


def get_access_token(user: AbstractBaseUser) -> str:
    """A usable access token for ``user``: one query when fresh, a locked refresh when due.

    While a failed refresh backs off, the current token is handed out until it expires.
    """
    token = OAuthToken.objects.filter(user_id=user.pk).first()
    if token is None or token.status == OAuthToken.Status.REVOKED:
        raise NotConnected(f"user {user.pk} has not connected Frame.io")
    if token.status != OAuthToken.Status.ACTIVE:
        raise ReauthorizationRequired(f"user {user.pk} must sign in with Frame.io again")
    now = timezone.now()
    if not is_due(token, now):
        return str(token.access_token)
    try:
        return str(refresh(token.pk).access_token)
    except RefreshInsideTransaction:
        # The sweep will refresh it; until it expires the current token still works.
        if not token.is_expired(now):
            return str(token.access_token)
        raise
    except (ProviderUnavailable, ProviderError):
        # The old access token may still have minutes to live; use it rather than fail.
        if not token.is_expired(now):
            return str(token.access_token)
        raise


def refresh(token_id: int, *, force: bool = False) -> OAuthToken:
    """Refresh one token under its row lock; safe to call from any number of processes.

    Waits (bounded) for a refresh already in progress and then returns its result without a
    second provider call. Raises NotConnected, ReauthorizationRequired, ProviderUnavailable
    (also when the wait runs out), ProviderError, or RefreshInsideTransaction.
    """
    return refresh_with_outcome(token_id, force=force)[0]


def refresh_with_outcome(token_id: int, *, force: bool = False) -> tuple[OAuthToken, Outcome]:
    """:func:`refresh`, also saying whether it called the provider (``REFRESHED``) or found
    the token not due (``NOT_DUE``). Raises as :func:`refresh` does."""
    token, outcome, error = _refresh_locked(token_id, force=force, skip_locked=False)
    if error is not None:
        raise error
    assert token is not None
    return token, outcome


@sensitive_variables()
def replace_rejected_token(user: AbstractBaseUser, rejected: str) -> str:
    """A new access token after the API answered 401 to ``rejected``.

    Refreshes only if ``rejected`` is still the stored token; if another thread or process
    already replaced it, returns the replacement without a second provider call.
    """
    token = OAuthToken.objects.filter(user_id=user.pk).only("pk").first()
    if token is None:
        raise NotConnected(f"user {user.pk} has not connected Frame.io")
    refreshed, _, error = _refresh_locked(
        token.pk, force=False, skip_locked=False, rejected=rejected
    )
    if error is not None:
        raise error
    assert refreshed is not None
    return str(refreshed.access_token)


def refresh_due(
    limit: int | None = None,
    *,
    progress: Callable[[int, Outcome], None] | None = None,
) -> RefreshSummary:
    """The sweep: refresh every token due now, one claimed row at a time.

    Rows another worker holds are skipped without a wait, and rows that come due after the
    sweep started are left for the next one, so the loop always ends.
    """
    summary = RefreshSummary()
    now = timezone.now()
    while limit is None or summary.refreshed + summary.failed + summary.reauth < limit:
        claimed = _claim_next_due(now)
        if claimed is None:
            break
        summary.add(claimed[1])
        if progress is not None:
            progress(claimed[0], claimed[1])
    summary.revoked = _revocations.retry_due_revocations(now)
    logger.info("refresh sweep done: %s", summary.as_dict())
    return summary


def refresh_if_due(token_id: int) -> Outcome:
    """The sweep's step for one row: skip it if another worker holds it or it is no longer
    due, else refresh. Failures are recorded on the row (and retried by a later sweep), not
    raised."""
    return _refresh_locked(token_id, force=False, skip_locked=True)[1]


@dataclass
class _Result:
    outcome: Outcome
    error: FrameioOAuthError | None = None
    retry_at: datetime | None = None
    rotated: bool = False
    # Celery's soft time limit (or whatever else cut a save short), raised again once what
    # it interrupted is recorded.
    interrupted: BaseException | None = None


@sensitive_variables("rejected")
def _refresh_locked(
    token_id: int, *, force: bool, skip_locked: bool, rejected: str | None = None
) -> tuple[OAuthToken | None, Outcome, FrameioOAuthError | None]:
    if skip_locked:
        return _refresh_locked_once(token_id, "skip", force=force, rejected=rejected)
    # Uncontended (the usual case): lock with NOWAIT, no lock_timeout round trip. Contended:
    # that transaction is rolled back and a second one waits, bounded by lock_timeout.
    try:
        return _refresh_locked_once(token_id, "nowait", force=force, rejected=rejected)
    except _rows.RowLocked:
        return _refresh_locked_once(token_id, "wait", force=force, rejected=rejected)


@sensitive_variables("rejected")
def _refresh_locked_once(
    token_id: int, lock: str, *, force: bool, rejected: str | None
) -> tuple[OAuthToken | None, Outcome, FrameioOAuthError | None]:
    skip_locked = lock == "skip"

    def work(attempt: _transaction.Attempt) -> tuple[OAuthToken | None, _Result]:
        nonlocal force
        token = _lock(token_id, lock)
        if token is None:
            if skip_locked:
                return None, _Result(Outcome.LOCKED)
            raise NotConnected(f"token {token_id} does not exist")
        now = timezone.now()
        if token.status != OAuthToken.Status.ACTIVE:
            if skip_locked:
                return token, _Result(Outcome.NOT_DUE)
            if token.status == OAuthToken.Status.REVOKED:
                raise NotConnected(f"token {token_id} was disconnected")
            raise ReauthorizationRequired(f"token {token_id} needs re-authorization")
        if rejected is not None:
            # The API refused this token: refresh only if nobody has replaced it yet.
            force = token.access_token == rejected
            if not force:
                return token, _Result(Outcome.NOT_DUE)
        # Re-check under the lock: another worker may have refreshed while we waited.
        if not force and not is_due(token, now):
            return token, _Result(Outcome.NOT_DUE)
        return token, _refresh_row(token, attempt)

    token, result = _in_own_transaction(work)
    if isinstance(result.error, ProviderUnavailable):
        result.error.retry_at = result.retry_at
    return token, result.outcome, result.error


def _in_own_transaction(
    work: Callable[[_transaction.Attempt], tuple[OAuthToken | None, _Result]],
) -> tuple[OAuthToken | None, _Result]:
    """``work`` in a refresh transaction of its own, then its outcome announced. If saving a
    provider's answer fails (a database error, or Celery's soft time limit in the UPDATE or
    the COMMIT), the answer is saved again first, and an interruption raised afterwards."""
    attempt = _transaction.Attempt()
    try:
        with _transaction.own_transaction():
            token, result = work(attempt)
    except Error as exc:
        token, result = _saved_again(attempt, exc)
    except BaseException as exc:
        if attempt.unsaved is None:
            raise
        token, result = _saved_again(attempt, exc)
        result.interrupted = exc
    if token is not None:
        _announce(token, result)
    if result.interrupted is not None:
        raise result.interrupted
    return token, result


def lock_hold() -> float:
    """How long a refresh holds its row lock at most, mostly idle: the provider call."""
    return conf.http_timeout + LOCK_WAIT_SLACK


def _lock(token_id: int, lock: str) -> OAuthToken | None:
    # A waiting caller waits as long as a refresh can hold the lock, and no longer.
    wait = lock_hold() if lock == "wait" else None
    try:
        return _rows.lock_by_id(token_id, lock, lock_wait=wait, hold=lock_hold)
    except _rows.RowLocked as exc:
        if lock == "nowait":
            raise  # _refresh_locked waits for it in a new transaction
        raise ProviderUnavailable(
            "another process is refreshing this token and did not finish in time"
        ) from exc


def _claim_next_due(now: datetime) -> tuple[int, Outcome] | None:
    """Lock the first due row no other worker holds and refresh it; None when none is left.

    The queue pattern (ORDER BY next_refresh_at LIMIT 1 FOR UPDATE SKIP LOCKED): concurrent
    sweeps each take a different row and never spend a lock attempt on one another's rows.
    """

    def work(attempt: _transaction.Attempt) -> tuple[OAuthToken | None, _Result]:
        token = _rows.claim_due(now, hold=lock_hold)
        if token is None:
            return None, _Result(Outcome.LOCKED)
        return token, _refresh_row(token, attempt)

    token, result = _in_own_transaction(work)
    return None if token is None else (token.pk, result.outcome)


def _saved_again(
    attempt: _transaction.Attempt, failure: BaseException
) -> tuple[OAuthToken, _Result]:
    """After the refresh transaction failed: the provider's answer saved all the same, or
    ``failure`` raised (see _transaction)."""
    saved = _transaction.save_again(attempt, failure)
    return saved.token, _Result(
        Outcome.REFRESHED, rotated=saved.rotated, interrupted=attempt.interrupted
    )


@sensitive_variables("refresh_token", "response")
def _refresh_row(token: OAuthToken, attempt: _transaction.Attempt) -> _Result:
    """One provider call for a locked row, and its outcome saved on the row. Never raises a
    provider or decryption error: they are recorded and returned (and so is Celery's soft time
    limit, for the caller to raise after the commit)."""
    try:
        refresh_token = token.refresh_token
    except DecryptionError as exc:
        # A missing key is an operator's mistake to fix, not the user's: keep the row as it
        # is, back off, and let the sweep move on to the next row.
        logger.error("token %s cannot be decrypted: %s", token.pk, exc)
        return _Result(Outcome.FAILED, exc, retry_at=_mark_failed(token, exc))
    if not refresh_token:
        if not token.is_expired():
            # Nothing to refresh with until it expires: take the row off the schedule.
            token.next_refresh_at = None
            _rows.save_fields(token, ["next_refresh_at", "updated_at"])
            return _Result(Outcome.NOT_DUE)
        missing = ReauthorizationRequired("no refresh token; the offline scope was not granted")
        _mark_reauth(token, missing)
        return _Result(Outcome.REAUTH, missing)
    try:
        response = provider.refresh_grant(refresh_token, scope=refresh_scope(token))
    except ReauthorizationRequired as exc:
        _mark_reauth(token, exc)
        return _Result(Outcome.REAUTH, exc)
    except (ProviderUnavailable, ProviderError) as exc:
        return _Result(Outcome.FAILED, exc, retry_at=_mark_failed(token, exc))
    except SoftTimeLimitExceeded as exc:
        # The task must stop. Whether the provider rotated the token is unknown either way,
        # so the row stays as it is and backs off like after a timeout; the task ends once
        # that is committed.
        timed_out = ProviderUnavailable("the task's time limit ran out during the provider call")
        retry_at = _mark_failed(token, timed_out)
        return _Result(Outcome.FAILED, timed_out, retry_at=retry_at, interrupted=exc)
    except Exception as exc:
        # Whatever else goes wrong must not stop the sweep on this row forever: record it and
        # back off like any other failure.
        logger.exception("refresh of token %s failed unexpectedly", token.pk)
        error = ProviderError(f"unexpected {type(exc).__name__} during the refresh")
        return _Result(Outcome.FAILED, error, retry_at=_mark_failed(token, error))
    replaced = _rows.ciphertexts(token)
    # The answer's own time, not the sweep's start: expiry and schedule count from it.
    issued_at = timezone.now()
    apply_tokens(token, response, keep_refresh_token=True, issued_at=issued_at)
    token.last_refreshed_at = issued_at
    token.failure_count = 0
    token.last_error = ""
    rotated = response.refresh_token is not None
    # If this save or the commit fails, the answer is saved in a second transaction.
    attempt.unsaved = _transaction.Unsaved(token, replaced, REFRESHED_FIELDS, rotated)
    _rows.save_fields(token, REFRESHED_FIELDS)
    return _Result(Outcome.REFRESHED, rotated=rotated)


def _announce(token: OAuthToken, result: _Result) -> None:
    # Signals go out after the commit, so receivers see what was stored.
    if result.outcome is Outcome.REFRESHED:
        _notify.send(signals.token_refreshed, token=token, rotated=result.rotated)
    elif result.outcome is Outcome.REAUTH:
        logger.warning("token %s needs re-authorization: %s", token.pk, result.error)
        _notify.send(signals.reauthorization_required, token=token, error=result.error)
    elif result.outcome is Outcome.FAILED:
        # A refusal, unlike an outage, fails the same way on every retry until someone acts.
        refused = isinstance(result.error, ProviderError)
        logger.log(
            logging.ERROR if refused else logging.WARNING,
            "refresh of token %s %s, retry at %s: %s",
            token.pk,
            "refused by the provider" if refused else "failed",
            result.retry_at,
            result.error,
        )
        _notify.send(
            signals.refresh_failed, token=token, error=result.error, retry_at=result.retry_at
        )


def _mark_reauth(token: OAuthToken, error: FrameioOAuthError) -> None:
    token.status = OAuthToken.Status.REAUTH_REQUIRED
    token.next_refresh_at = None
    token.last_error = str(error)[:255]
    _rows.save_fields(token, ["status", "next_refresh_at", "last_error", "updated_at"])


def _mark_failed(token: OAuthToken, error: FrameioOAuthError) -> datetime:
    token.failure_count += 1
    # Counted from the failure, not from the sweep's start: a sweep can run for minutes.
    failed_at = timezone.now()
    retry_at = retry_time(failed_at, token.failure_count, getattr(error, "retry_after", None))
    token.next_refresh_at = retry_at
    token.last_error = str(error)[:255]
    _rows.save_fields(token, ["failure_count", "next_refresh_at", "last_error", "updated_at"])
    return retry_at
