"""The database side of the refresh rule: which database, row locks, the refresh's own
transaction, and the second save of a provider's answer when the first one fails.

On PostgreSQL the hot statements are SQL built once per process from the model's metadata:
compiling the equivalent querysets cost more CPU than the rest of a refresh (docs: design).
Elsewhere (SQLite in development) they use the ORM.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from celery.exceptions import SoftTimeLimitExceeded
from django.db import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    OperationalError,
    connections,
    router,
    transaction,
)
from django.db.models import Field

from .. import telemetry
from ..conf import conf
from ..exceptions import RefreshInsideTransaction
from ..models import OAuthToken

logger = logging.getLogger("frameio_oauth.services")

# An on-demand caller waits for a refresh in progress at most this long beyond HTTP_TIMEOUT.
LOCK_WAIT_SLACK = 5.0
# How long a failed save of a provider's answer is tried again, and how long each try waits
# for the row lock.
RECOVERY_BUDGET = 10.0
RECOVERY_LOCK_WAIT = 2.0
FIRST_RECOVERY_PAUSE = 0.25


class LockMode(enum.Enum):
    """How a row lock is taken: wait for it, fail at once if held, or skip a held row."""

    WAIT = " FOR UPDATE"
    NOWAIT = " FOR UPDATE NOWAIT"
    SKIP = " FOR UPDATE SKIP LOCKED"


class RowLocked(Exception):
    """Another transaction holds the row: NOWAIT found it locked, or lock_timeout ran out."""


def alias() -> str:
    """The database alias for token locks and writes (``default`` unless a router says
    otherwise); locks and their transactions always use it, so they share one connection."""
    return router.db_for_write(OAuthToken)


def lock_hold() -> float:
    """How long a transaction holds a token's row lock at most, mostly idle: the provider
    call, and what it takes to record its outcome."""
    return conf.http_timeout + LOCK_WAIT_SLACK


# --- locks ------------------------------------------------------------------------------------


def lock_row(token_id: int, mode: LockMode, *, lock_wait: float | None = None) -> OAuthToken | None:
    """The row, locked. WAIT blocks (on PostgreSQL for at most ``lock_wait`` seconds, by
    default :func:`lock_hold`), NOWAIT raises :class:`RowLocked` if the row is held, SKIP
    returns None if it is. Any other database error (a dropped connection) propagates: it says
    nothing about who holds the row."""
    try:
        if not _on_postgresql():
            queryset = OAuthToken.objects.using(alias()).select_for_update(
                nowait=mode is LockMode.NOWAIT, skip_locked=mode is LockMode.SKIP
            )
            return queryset.filter(pk=token_id).first()
        if mode is LockMode.WAIT and lock_wait is None:
            lock_wait = lock_hold()
        return _fetch(f"{_q('id')} = %s", mode, [token_id], lock_wait=lock_wait)
    except DatabaseError as exc:
        if _lock_not_available(exc):
            raise RowLocked from exc
        raise


def lock_users_row(user_id: Any) -> OAuthToken | None:
    """The user's row, locked (waiting for it)."""
    if not _on_postgresql():
        return OAuthToken.objects.using(alias()).select_for_update().filter(user_id=user_id).first()
    return _fetch(f"{_q('user_id')} = %s", LockMode.WAIT, [user_id])


def claim_due(now: datetime) -> OAuthToken | None:
    """The first row due at ``now`` that no other transaction holds, locked: the queue
    pattern, so concurrent sweeps each take a different row."""
    if not _on_postgresql():
        return (
            OAuthToken.objects.using(alias()).due(now).select_for_update(skip_locked=True).first()
        )
    where = (
        f"{_q('status')} = %s AND {_q('next_refresh_at')} <= %s "
        f"ORDER BY {_q('next_refresh_at')} LIMIT 1"
    )
    return _fetch(where, LockMode.SKIP, [OAuthToken.Status.ACTIVE, now])


def _lock_not_available(exc: DatabaseError) -> bool:
    if _on_postgresql():
        # SQLSTATE lock_not_available: what NOWAIT and lock_timeout raise, and nothing else.
        cause = exc.__cause__
        return (getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)) == "55P03"
    # Django documents an OperationalError for a NOWAIT that finds the row locked.
    return isinstance(exc, OperationalError)


# A shorter idle_in_transaction_session_timeout would free the row mid-call: the locking SELECT
# raises it for this transaction (params: the hold in ms, as number and text; docs/design.md).
_IDLE_GUARD = (
    "CASE WHEN current_setting('idle_in_transaction_session_timeout') <> '0' AND "
    "extract(epoch FROM current_setting('idle_in_transaction_session_timeout')::interval) "
    "* 1000 < %s THEN set_config('idle_in_transaction_session_timeout', %s, true) END"
)


def _fetch(
    where: str, mode: LockMode, params: list[Any], *, lock_wait: float | None = None
) -> OAuthToken | None:
    conn = _connection()
    hold_ms = int(lock_hold() * 1000)
    with conn.cursor() as cursor:
        if lock_wait is not None:
            cursor.execute(f"SET LOCAL lock_timeout = {int(lock_wait * 1000)}")
        cursor.execute(_select_sql(where, mode), [hold_ms, str(hold_ms), *params])
        row = cursor.fetchone()
    if row is None:
        return None
    return OAuthToken.from_db(conn.alias, _attnames(), row[:-1])


@cache
def _select_sql(where: str, mode: LockMode) -> str:
    columns = ", ".join(_q(field.column) for field in OAuthToken._meta.concrete_fields)
    table = _q(OAuthToken._meta.db_table)
    # Identifiers come from the model's metadata; every value is a bound parameter.
    return f"SELECT {columns}, {_IDLE_GUARD} FROM {table} WHERE {where}{mode.value}"  # noqa: S608


@cache
def _attnames() -> list[str]:
    return [field.attname for field in OAuthToken._meta.concrete_fields]


# --- writes -----------------------------------------------------------------------------------


def save_fields(token: OAuthToken, names: Sequence[str]) -> None:
    """``token.save(update_fields=names)``, minus the queryset machinery on PostgreSQL."""
    if not _on_postgresql():
        token.save(using=alias(), update_fields=names)
        return
    sql, fields = _update_sql(tuple(names))
    # str, int, None and aware datetimes, which psycopg adapts as they are: skipping
    # get_db_prep_save saves a fifth of the refresh's own CPU.
    values = [field.pre_save(token, False) for field in fields]
    with _connection().cursor() as cursor:
        cursor.execute(sql, [*values, token.pk])


@cache
def _update_sql(names: tuple[str, ...]) -> tuple[str, list[Field[Any, Any]]]:
    fields = [cast("Field[Any, Any]", OAuthToken._meta.get_field(name)) for name in names]
    assignments = ", ".join(f"{_q(field.column)} = %s" for field in fields)
    table = _q(OAuthToken._meta.db_table)
    return f"UPDATE {table} SET {assignments} WHERE {_q('id')} = %s", fields  # noqa: S608


# --- the refresh's transaction and its second save -------------------------------------------


class Recovery(enum.Enum):
    """What a second save of a provider's answer found."""

    SAVED = "saved"  # the row still held what the refresh replaced: written now
    LANDED = "landed"  # it held what the refresh wrote: the first COMMIT did land
    CHANGED = "changed"  # someone changed it since (disconnect, new grant, key rotation)
    DELETED = "deleted"


@dataclass(repr=False)
class PendingSave:
    """A provider's answer applied to a locked row, about to be written: the ciphertexts it
    replaces, the columns to write, and whether the refresh token rotated."""

    token: OAuthToken
    replaced: tuple[str | None, str | None]
    fields: Sequence[str]
    rotated: bool


class RefreshTransaction:
    """A refresh's own transaction (never a savepoint in the caller's: a caller's rollback
    after the provider rotated the refresh token would restore the spent one).

    The refresh calls :meth:`saving` just before it writes a provider's answer. If that write
    or the COMMIT then fails, or Celery's soft time limit cuts it short, leaving the ``with``
    block saves the answer again in a transaction of its own, compare-and-swap on the
    ciphertexts, within RECOVERY_BUDGET; the failure is swallowed once the answer is stored,
    and a soft time limit is kept in :attr:`interrupted` for the caller to raise afterwards.
    """

    def __init__(self) -> None:
        self.pending: PendingSave | None = None
        # Set when the second save stored the answer: the failure was swallowed.
        self.recovered: PendingSave | None = None
        self.interrupted: BaseException | None = None
        # The refresh's span, once a provider call is to be made; ended with the outcome.
        self.span: telemetry.RefreshSpan | telemetry.Nothing = telemetry.NOTHING
        self._atomic: Any = None

    def saving(self, pending: PendingSave) -> None:
        self.pending = pending

    def __enter__(self) -> RefreshTransaction:
        self._atomic = transaction.atomic(using=alias(), durable=True)
        try:
            self._atomic.__enter__()
        except RuntimeError as exc:
            raise RefreshInsideTransaction(
                "a Frame.io refresh cannot run inside an open transaction; call it outside "
                "transaction.atomic() (views: @transaction.non_atomic_requests)"
            ) from exc
        return self

    def __exit__(self, kind: Any, failure: BaseException | None, traceback: Any) -> bool:
        try:
            swallowed = self._exit(kind, failure, traceback)
        except BaseException as escaped:
            self._given_up(escaped)
            raise
        if failure is not None and not swallowed:
            self._given_up(failure)
        return swallowed

    def _given_up(self, error: BaseException) -> None:
        """The block failed for good: an answer the provider gave (``pending``) is lost."""
        self.span.finish(None, type(error).__name__)
        if self.pending is not None:
            telemetry.record_refresh(
                telemetry.RefreshOutcome.FAILED, telemetry.FailureReason.NOT_SAVED
            )

    def _exit(self, kind: Any, failure: BaseException | None, traceback: Any) -> bool:
        try:
            self._atomic.__exit__(kind, failure, traceback)
        except BaseException as commit_failure:  # the COMMIT, or the soft limit inside it
            failure = failure or commit_failure
        if failure is None:
            return False
        if self.pending is None or isinstance(failure, DataError | IntegrityError):
            # Nothing from the provider to keep, or an error a second try would repeat.
            if kind is None:
                raise failure
            return False
        if not isinstance(failure, Error):
            self.interrupted = failure
        self._save_again(failure)
        self.recovered = self.pending
        return True

    def _save_again(self, failure: BaseException) -> None:
        pending = self.pending
        assert pending is not None
        written = pending.token.ciphertexts()
        deadline = time.monotonic() + RECOVERY_BUDGET
        pause, tries, found, last = FIRST_RECOVERY_PAUSE, 0, None, ""
        while found is None:
            tries += 1
            try:
                found = _compare_and_save(pending, written, deadline)
            except (Error, RowLocked, SoftTimeLimitExceeded) as exc:
                if isinstance(exc, SoftTimeLimitExceeded):
                    self.interrupted = self.interrupted or exc
                last = str(exc) or type(exc).__name__
                if time.monotonic() + pause >= deadline:
                    break
                try:
                    time.sleep(pause)
                except SoftTimeLimitExceeded as interruption:
                    self.interrupted = self.interrupted or interruption
                pause *= 2
        if found in (Recovery.SAVED, Recovery.LANDED):
            logger.warning(
                "the refresh of token %s was %s after its save reported: %s",
                pending.token.pk,
                "saved by a second try" if found is Recovery.SAVED else "committed",
                failure,
            )
            return
        why = (
            f"{tries} more tries failed, the last with: {last}"
            if found is None
            else f"the row was {found.value} meanwhile and is left as it is"
        )
        logger.error(
            "the %s of token %s could not be saved (%s; %s)%s",
            "rotated refresh token" if pending.rotated else "refreshed access token",
            pending.token.pk,
            failure,
            why,
            ": the row keeps the refresh token it had, which the provider may no longer accept"
            if pending.rotated
            else "; its refresh token did not change",
        )
        # The error the caller would have seen without a second try.
        raise failure


def _compare_and_save(
    pending: PendingSave, written: tuple[str | None, str | None], deadline: float
) -> Recovery:
    _drop_if_broken()
    with transaction.atomic(using=alias(), durable=True):
        lock_wait = min(RECOVERY_LOCK_WAIT, max(deadline - time.monotonic(), 0.1))
        row = lock_row(pending.token.pk, LockMode.WAIT, lock_wait=lock_wait)
        if row is None:
            return Recovery.DELETED
        stored = row.ciphertexts()
        if stored == written:
            return Recovery.LANDED
        if stored != pending.replaced or row.status != OAuthToken.Status.ACTIVE:
            return Recovery.CHANGED
        save_fields(pending.token, pending.fields)
        return Recovery.SAVED


def _drop_if_broken() -> None:
    # A connection still open but unusable would fail every try: close it, Django reconnects.
    connection = connections[alias()]
    if connection.connection is not None and not connection.is_usable():
        connection.close()


# --- helpers ------------------------------------------------------------------------------------


def _on_postgresql() -> bool:
    return bool(_connection().vendor == "postgresql")


def _connection() -> Any:
    # The connection itself: each attribute read through django.db.connection goes through a
    # context-local lookup, which adds up on this path.
    return connections[alias()]


def _q(name: str | None) -> str:
    # Only names from the model's own metadata; used on PostgreSQL only.
    assert name is not None
    return str(connections[alias()].ops.quote_name(name))
