"""The refresh rule: one row, one refresh at a time, never an old refresh token twice.

A refresh locks its row in a transaction of its own (:class:`_db.RefreshTransaction`),
re-checks under the lock whether the token is still due, makes one provider call, and stores
the outcome before the commit; signals go out after it. The reasoning is in docs/design.md.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import provider, signals, telemetry
from ..conf import conf
from ..exceptions import (
    DecryptionError,
    FrameioOAuthError,
    NotConnected,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    ReauthorizationRequired,
)
from ..models import OAuthToken
from . import _db
from ._db import LockMode, PendingSave, RefreshTransaction, RowLocked
from ._schedule import apply_tokens, is_due, retry_time

logger = logging.getLogger("frameio_oauth.services")

# A token the API rejects within this many seconds of a refresh is not replaced again.
REJECTED_MIN_AGE = 30.0
# Frame.io separates scopes with spaces, Adobe IMS with commas.
_SCOPE_SPLIT = re.compile(r"[\s,]+")


class Outcome(enum.Enum):
    """What one refresh attempt did."""

    REFRESHED = "refreshed"  # the provider answered and the new tokens are stored
    NOT_DUE = "not_due"  # not due (someone refreshed it meanwhile): no provider call
    LOCKED = "locked"  # another worker holds the row (the sweep does not wait)
    GONE = "gone"  # the row was deleted meanwhile
    FAILED = "failed"  # recorded on the row, retried after the backoff
    REAUTH = "reauth"  # the grant is gone: the user must connect again


@dataclass
class RefreshResult:
    outcome: Outcome
    token: OAuthToken | None = None
    error: FrameioOAuthError | None = None
    retry_at: datetime | None = None
    rotated: bool = False


def refresh(token_id: int, *, force: bool = False) -> OAuthToken:
    """Refresh one token under its row lock; safe to call from any number of processes.

    Waits (bounded) for a refresh already in progress and then returns its result without a
    second provider call. Raises NotConnected, ReauthorizationRequired, ProviderUnavailable
    (also when the wait runs out), ProviderError, DecryptionError or RefreshInsideTransaction.
    """
    return on_demand(token_id, force=force)


def refresh_with_outcome(token_id: int, *, force: bool = False) -> tuple[OAuthToken, Outcome]:
    """:func:`refresh`, also saying whether it called the provider (``REFRESHED``) or found
    the token not due (``NOT_DUE``). Raises as :func:`refresh` does."""
    result = attempt_on_demand(token_id, force=force)
    assert result.token is not None
    return result.token, result.outcome


def refresh_if_due(token_id: int, *, early: float = 0.0) -> Outcome:
    """The sweep's step for one row (a fanned-out task): skip it if another worker holds it
    or it is not due (or due within ``early`` seconds), else refresh. A failure is recorded on
    the row, not raised."""
    return _attempt(token_id, LockMode.SKIP, early=early).outcome


def lock_hold() -> float:
    """How long a refresh (or a disconnect) holds a row lock at most."""
    return _db.lock_hold()


def worst_case_refresh_seconds(*, waits_for_lock: bool) -> float:
    """The longest one refresh call can take: the wait for another worker's refresh of the
    row (on-demand callers only), its own provider call, and a second save of the answer."""
    wait = _db.lock_hold() if waits_for_lock else 0.0
    return wait + conf.http_timeout + _db.RECOVERY_BUDGET


def on_demand(token_id: int, *, force: bool = False, rejected: str | None = None) -> OAuthToken:
    result = attempt_on_demand(token_id, force=force, rejected=rejected)
    assert result.token is not None
    return result.token


def attempt_on_demand(
    token_id: int, *, force: bool = False, rejected: str | None = None
) -> RefreshResult:
    # Uncontended (the usual case): NOWAIT, no lock_timeout round trip. Contended: that
    # transaction is rolled back and a second one waits, bounded by lock_timeout.
    try:
        result = _attempt(token_id, LockMode.NOWAIT, force=force, rejected=rejected)
    except RowLocked:
        try:
            result = _attempt(token_id, LockMode.WAIT, force=force, rejected=rejected)
        except RowLocked as exc:
            raise ProviderUnavailable(
                "another process is refreshing this token and did not finish in time"
            ) from exc
    if result.error is not None:
        raise result.error
    return result


@sensitive_variables("rejected")
def _attempt(
    token_id: int,
    mode: LockMode,
    *,
    force: bool = False,
    rejected: str | None = None,
    early: float = 0.0,
) -> RefreshResult:
    """One refresh transaction for one row; its outcome announced after the commit."""
    result: RefreshResult | None = None
    tx = RefreshTransaction()
    with tx:
        token = _db.lock_row(token_id, mode)
        if token is None:
            if mode is not LockMode.SKIP:
                raise NotConnected(f"token {token_id} does not exist")
            # SKIP LOCKED cannot tell a row another worker holds from one that is gone.
            gone = not OAuthToken.objects.using(_db.alias()).filter(pk=token_id).exists()
            return RefreshResult(Outcome.GONE if gone else Outcome.LOCKED)
        if token.status != OAuthToken.Status.ACTIVE:
            if mode is LockMode.SKIP:
                return RefreshResult(Outcome.NOT_DUE, token)
            if token.status == OAuthToken.Status.REVOKED:
                raise NotConnected(f"token {token_id} was disconnected")
            raise ReauthorizationRequired(f"token {token_id} needs re-authorization")
        # A grant of another server is marked by refresh_locked whether it is due or not.
        if not token.issued_elsewhere():
            if rejected is not None:
                # Refresh only if nobody replaced it yet, and not one a refresh just issued:
                # the API refuses that for another reason (a missing scope), and it would
                # rotate per request.
                since = timezone.now() - timedelta(seconds=REJECTED_MIN_AGE)
                fresh = token.last_refreshed_at is not None and token.last_refreshed_at > since
                force = token.access_token == rejected and not fresh
                if not force:
                    return RefreshResult(Outcome.NOT_DUE, token)
            # Re-checked under the lock: another worker may have refreshed it while we waited.
            if not force and not is_due(token, timezone.now() + timedelta(seconds=early)):
                return RefreshResult(Outcome.NOT_DUE, token)
        result = refresh_locked(token, tx)
    return finish(tx, result)


def finish(tx: RefreshTransaction, result: RefreshResult | None) -> RefreshResult:
    """After a refresh transaction: the answer its second save stored, if it took one (the
    block was then cut short, ``result`` None); the outcome announced; Celery's soft time
    limit raised again if it cut in."""
    if tx.recovered is not None:
        result = RefreshResult(Outcome.REFRESHED, tx.recovered.token, rotated=tx.recovered.rotated)
    assert result is not None
    failed = result.outcome is Outcome.FAILED
    tx.span.finish(result.outcome.value, type(result.error).__name__ if failed else None)
    if result.token is not None:
        _announce(result.token, result)
    if tx.interrupted is not None:
        raise tx.interrupted
    return result


def refresh_locked(token: OAuthToken, tx: RefreshTransaction) -> RefreshResult:
    """One provider call for a row locked in ``tx``, and its outcome saved on the row.
    Provider and decryption errors are recorded and returned, never raised.

    A grant that another authorization server issued is marked ``reauth_required`` with no
    call to either server: a token goes back only to the server that issued it."""
    # Ended by finish() once the outcome is committed, or by tx if the answer is lost.
    tx.span = telemetry.refresh_span(token.pk)
    return _refresh_locked(token, tx)


@sensitive_variables("refresh_token", "response")
def _refresh_locked(token: OAuthToken, tx: RefreshTransaction) -> RefreshResult:
    if token.issued_elsewhere():
        return _reauth(token, ReauthorizationRequired(token.issued_elsewhere_message()))
    try:
        refresh_token = token.refresh_token
    except DecryptionError as exc:
        # A key taken out of ENCRYPTION_KEYS is the operator's to fix: back off, move on.
        logger.error("token %s cannot be decrypted: %s", token.pk, exc)
        return _failed(token, exc)
    if not refresh_token:
        if not token.is_expired():
            # Nothing to refresh with until it expires: take the row off the schedule.
            token.next_refresh_at = None
            _db.save_fields(token, ["next_refresh_at", "updated_at"])
            return RefreshResult(Outcome.NOT_DUE, token)
        return _reauth(
            token, ReauthorizationRequired("no refresh token; the offline scope was not granted")
        )
    replaced = token.ciphertexts()
    try:
        response = provider.refresh_grant(refresh_token, scope=refresh_scope(token))
        # The answer's own time, not the sweep's start: expiry and schedule count from it.
        issued_at = timezone.now()
        apply_tokens(token, response, keep_refresh_token=True, issued_at=issued_at)
    except ReauthorizationRequired as exc:
        return _reauth(token, exc)
    except (ProviderUnavailable, ProviderError) as exc:
        return _failed(token, exc)
    except SoftTimeLimitExceeded as exc:
        # Whether the provider rotated the token is unknown: the row stays as it is and backs
        # off as after a timeout; the task stops once that is committed.
        tx.interrupted = exc
        return _failed(token, ProviderUnavailable("the task's time limit ran out mid-call"))
    except Exception as exc:
        # Whatever else breaks must not stop the sweep, nor this row for good. (Only the
        # failure's columns are saved, whatever apply_tokens had set.)
        logger.exception("refresh of token %s failed unexpectedly", token.pk)
        return _failed(token, ProviderError(f"unexpected {type(exc).__name__} in the refresh"))
    token.last_refreshed_at = issued_at
    token.failure_count = 0
    token.last_error = ""
    rotated = response.refresh_token is not None
    fields = OAuthToken.REFRESHED_FIELDS
    tx.saving(PendingSave(token, replaced, fields, rotated))
    _db.save_fields(token, fields)
    return RefreshResult(Outcome.REFRESHED, token, rotated=rotated)


def refresh_scope(token: OAuthToken) -> str | None:
    """The configured scopes this grant holds, plus the preset's offline scope if it was
    granted; ``None`` (ask for the scope as granted) when that leaves nothing. RFC 6749 §6: a
    refresh never asks for more than was granted."""
    preset = conf.preset
    return _scope_for(token.scope, tuple(conf.scopes), preset.scope_separator, preset.offline_scope)


@lru_cache(maxsize=256)
def _scope_for(
    granted_text: str, configured: tuple[str, ...], separator: str, offline: str
) -> str | None:
    granted = set(_SCOPE_SPLIT.split(granted_text.strip())) - {""}
    kept = [scope for scope in configured if scope in granted and scope != offline]
    if not kept:
        return None
    if offline in granted:
        kept.append(offline)
    return separator.join(kept)


def _failed(token: OAuthToken, error: FrameioOAuthError) -> RefreshResult:
    # Counted from the failure, not from the sweep's start: a sweep can run for minutes.
    retry_after = getattr(error, "retry_after", None)
    failures = token.failure_count + 1
    retry_at = retry_time(timezone.now(), failures, retry_after, expires_at=token.expires_at)
    _db.save_fields(token, token.record_failure(error, retry_at))
    if isinstance(error, ProviderUnavailable):
        error.retry_at = retry_at
    return RefreshResult(Outcome.FAILED, token, error, retry_at)


def _reauth(token: OAuthToken, error: ReauthorizationRequired) -> RefreshResult:
    _db.save_fields(token, token.mark_reauth_required(error))
    return RefreshResult(Outcome.REAUTH, token, error)


def _announce(token: OAuthToken, result: RefreshResult) -> None:
    if result.outcome is Outcome.REFRESHED:
        telemetry.record_refresh(telemetry.RefreshOutcome.REFRESHED)
        signals.announce(signals.token_refreshed, token=token, rotated=result.rotated)
    elif result.outcome is Outcome.REAUTH:
        telemetry.record_refresh(telemetry.RefreshOutcome.REAUTH_REQUIRED)
        logger.warning("token %s needs re-authorization: %s", token.pk, result.error)
        signals.announce(signals.reauthorization_required, token=token, error=result.error)
    elif result.outcome is Outcome.FAILED:
        telemetry.record_refresh(telemetry.RefreshOutcome.FAILED, _failure_reason(result.error))
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
        signals.announce(
            signals.refresh_failed, token=token, error=result.error, retry_at=result.retry_at
        )


def _failure_reason(error: FrameioOAuthError | None) -> telemetry.FailureReason:
    if isinstance(error, DecryptionError):
        return telemetry.FailureReason.DECRYPTION
    if isinstance(error, RateLimited):
        return telemetry.FailureReason.RATE_LIMITED
    if isinstance(error, ProviderUnavailable):
        return telemetry.FailureReason.UNAVAILABLE
    return telemetry.FailureReason.REFUSED
