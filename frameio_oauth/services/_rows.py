"""Row access on the refresh hot path: lock, claim, save; and which database that is.

On PostgreSQL these send SQL built once per process from the model's metadata, because
compiling the equivalent querysets cost about 1 ms of CPU per statement on our benchmark
machine, more than everything else a refresh does besides the HTTP call (see
benchmarks/refresh_cost.py). Elsewhere (SQLite in development) they use the ORM. Both return
and take ordinary OAuthToken instances.

Locks, writes and their transactions all go to :func:`alias`, the database the project's
routers choose for writing tokens, so a lock and the transaction it lives in are always on one
connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

from django.db import DatabaseError, OperationalError, connections, router
from django.db.models import Field

from ..models import OAuthToken

_LOCK_CLAUSES = {
    "wait": " FOR UPDATE",
    "nowait": " FOR UPDATE NOWAIT",
    "skip": " FOR UPDATE SKIP LOCKED",
}


def alias() -> str:
    """The database alias for token locks and writes (``default`` unless a router says
    otherwise)."""
    return router.db_for_write(OAuthToken)


def _fast() -> bool:
    return bool(_connection().vendor == "postgresql")


class RowLocked(Exception):
    """Another transaction holds the row: NOWAIT found it locked, or lock_timeout ran out."""


def lock_by_id(
    token_id: int, mode: str, *, lock_wait: float | None = None, hold: _Hold | None = None
) -> OAuthToken | None:
    """The row, locked: ``wait`` blocks (on PostgreSQL at most ``lock_wait`` seconds, if
    given), ``nowait`` raises :class:`RowLocked` if held, ``skip`` returns None if held. Any
    other database error (a dropped connection...) propagates as it is: it says nothing about
    who holds the row. For ``hold``, see :data:`_IDLE_GUARD`."""
    try:
        if not _fast():
            queryset = OAuthToken.objects.using(alias()).select_for_update(
                nowait=mode == "nowait", skip_locked=mode == "skip"
            )
            return queryset.filter(pk=token_id).first()
        where = f"{_q(OAuthToken._meta.pk.column)} = %s"
        return _fetch(where, mode, [token_id], lock_wait=lock_wait, hold=hold)
    except DatabaseError as exc:
        if _lock_not_available(exc):
            raise RowLocked from exc
        raise


def lock_by_user(user_id: Any, *, hold: _Hold) -> OAuthToken | None:
    """The user's row, locked (waiting for it), for a transaction that will sit idle under
    the lock for ``hold()`` seconds (see :data:`_IDLE_GUARD`)."""
    if not _fast():
        return OAuthToken.objects.using(alias()).select_for_update().filter(user_id=user_id).first()
    return _fetch(f"{_q('user_id')} = %s", "wait", [user_id], hold=hold)


def _lock_not_available(exc: DatabaseError) -> bool:
    if _connection().vendor == "postgresql":
        # lock_not_available: what NOWAIT and lock_timeout raise, and nothing else does.
        cause = exc.__cause__
        return (getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)) == "55P03"
    # Django documents an OperationalError for a NOWAIT that finds the row locked.
    return isinstance(exc, OperationalError)


def claim_due(now: datetime, *, hold: _Hold | None = None) -> OAuthToken | None:
    """The first due row that no other transaction holds, locked. For ``hold``, see
    :data:`_IDLE_GUARD`."""
    if not _fast():
        return (
            OAuthToken.objects.using(alias()).due(now).select_for_update(skip_locked=True).first()
        )
    where = (
        f"{_q('status')} = %s AND {_q('next_refresh_at')} <= %s "
        f"ORDER BY {_q('next_refresh_at')} LIMIT 1"
    )
    return _fetch(where, "skip", [OAuthToken.Status.ACTIVE, now], hold=hold)


def ciphertexts(token: OAuthToken) -> tuple[str | None, str | None]:
    """The access and refresh token columns as they are on the instance: each write of a
    secret encrypts it afresh, so these tell one stored grant from any other."""
    return (
        token.__dict__.get("access_token_ciphertext"),
        token.__dict__.get("refresh_token_ciphertext"),
    )


def save_fields(token: OAuthToken, names: Sequence[str]) -> None:
    """``token.save(update_fields=names)``, minus the queryset machinery on PostgreSQL."""
    if not _fast():
        token.save(using=alias(), update_fields=names)
        return
    conn = _connection()
    sql, fields = _update_sql(tuple(names))
    # These columns hold str, int, None and aware datetimes, which psycopg adapts as they are;
    # skipping get_db_prep_save here saves a fifth of the refresh's own CPU.
    values = [field.pre_save(token, False) for field in fields]
    with conn.cursor() as cursor:
        cursor.execute(sql, [*values, token.pk])


@cache
def _update_sql(names: tuple[str, ...]) -> tuple[str, list[Field[Any, Any]]]:
    fields = [cast("Field[Any, Any]", OAuthToken._meta.get_field(name)) for name in names]
    assignments = ", ".join(f"{_q(field.column)} = %s" for field in fields)
    table = _q(OAuthToken._meta.db_table)
    # Identifiers come from the model's metadata; every value is a bound parameter.
    return f"UPDATE {table} SET {assignments} WHERE {_q('id')} = %s", fields  # noqa: S608


@cache
def _select_sql(where: str, mode: str, guarded: bool) -> str:
    columns = ", ".join(_q(field.column) for field in OAuthToken._meta.concrete_fields)
    if guarded:
        columns += f", {_IDLE_GUARD}"
    table = _q(OAuthToken._meta.db_table)
    # Identifiers come from the model's metadata; every value is a bound parameter.
    return f"SELECT {columns} FROM {table} WHERE {where}{_LOCK_CLAUSES[mode]}"  # noqa: S608


# How long, in seconds, a transaction will sit idle under the lock it is taking (the provider
# call).
_Hold = Callable[[], float]

# An idle_in_transaction_session_timeout (server, role or database setting) shorter than the
# provider call would end the session in the middle of a refresh, releasing the row lock
# while the provider is still answering, and another worker could then send the same refresh
# token. So the locking SELECT itself raises it, for this transaction only, when it is set and
# shorter than the hold (two parameters: the hold in ms, as a number and as text). Part of the
# statement rather than a setting read once per connection: the server's value can change
# under an open session (ALTER SYSTEM and a reload), and this costs no round trip. It runs as
# the row is read, before the transaction goes idle. (A pooler's own idle-transaction limit,
# such as PgBouncer's idle_transaction_timeout, cannot be seen from here.)
_IDLE_GUARD = (
    "CASE WHEN current_setting('idle_in_transaction_session_timeout') <> '0' AND "
    "extract(epoch FROM current_setting('idle_in_transaction_session_timeout')::interval) "
    "* 1000 < %s THEN set_config('idle_in_transaction_session_timeout', %s, true) END"
)


def _fetch(
    where: str,
    mode: str,
    params: list[Any],
    *,
    lock_wait: float | None = None,
    hold: _Hold | None = None,
) -> OAuthToken | None:
    conn = _connection()
    if hold is not None:
        hold_ms = int(hold() * 1000)
        params = [hold_ms, str(hold_ms), *params]
    with conn.cursor() as cursor:
        if lock_wait is not None:
            # Bound the lock wait for this transaction only.
            cursor.execute(f"SET LOCAL lock_timeout = {int(lock_wait * 1000)}")
        cursor.execute(_select_sql(where, mode, hold is not None), params)
        row = cursor.fetchone()
    if row is None:
        return None
    if hold is not None:
        row = row[:-1]
    return OAuthToken.from_db(conn.alias, _attnames(), row)


@cache
def _attnames() -> list[str]:
    return [field.attname for field in OAuthToken._meta.concrete_fields]


def _connection() -> Any:
    # The thread's connection itself: each attribute read through django.db.connection goes
    # through a context-local lookup, which adds up on this path.
    return connections[alias()]


def _q(name: str | None) -> str:
    # Only ever given names from the model's own metadata, never input. Used on PostgreSQL
    # only (see _fast), so PostgreSQL's quoting whichever alias asks.
    assert name is not None
    return str(connections[alias()].ops.quote_name(name))
