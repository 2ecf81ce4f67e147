"""A refresh's own transaction, and a second try at its save when the first one fails.

The provider call happens inside the transaction, under the row lock. If the UPDATE or the
COMMIT after it fails (the connection dropped, the server restarted or failed over), the
provider has already answered and may have rotated the refresh token: the one still on the
row is spent. Rolling back and forgetting the answer would make the next refresh present the
spent token, and a provider that detects reuse then revokes the whole grant. The same goes for
anything else that cuts the transaction short there, Celery's soft time limit above all (it is
raised again once the answer is saved). So the answer is saved in a transaction of its own
instead, compare-and-swap on the secret columns:

* the row still holds the ciphertexts the refresh replaced: write the new tokens;
* it already holds the ones we wrote: the COMMIT landed and only its answer was lost;
* anything else: someone changed the row since (a disconnect, a new sign-in, key rotation);
  it is left alone, and the error is logged and raised.

A few tries with short pauses, at most RECOVERY_BUDGET seconds in all (plus the time a
connection attempt to an unreachable server takes: set ``connect_timeout`` in the database
OPTIONS). The happy path pays no statement for this, only a note of what it is about to save.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DataError, Error, IntegrityError, connections, transaction

from ..exceptions import RefreshInsideTransaction
from ..models import OAuthToken
from . import _rows

logger = logging.getLogger("frameio_oauth.services")

# How long a failed save is tried again at most, and how long each try waits for the row lock
# (held by then only by a worker that loaded the row after the failure).
RECOVERY_BUDGET = 10.0
RECOVERY_LOCK_WAIT = 2.0
_FIRST_PAUSE = 0.25


@contextmanager
def own_transaction() -> Iterator[None]:
    """A transaction of our own, never a savepoint in the caller's: a caller's rollback after
    the provider rotated the refresh token would restore the spent one."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(transaction.atomic(using=_rows.alias(), durable=True))
        except RuntimeError as exc:
            raise RefreshInsideTransaction(
                "a Frame.io refresh cannot run inside an open transaction; call it outside "
                "transaction.atomic() (views: @transaction.non_atomic_requests)"
            ) from exc
        yield


@dataclass(repr=False)
class Unsaved:
    """A refresh the provider answered, being saved: the row with the new tokens applied,
    the ciphertexts they replace, and the columns to write."""

    token: OAuthToken
    replaced: tuple[str | None, str | None]
    fields: Sequence[str]
    rotated: bool


@dataclass
class Attempt:
    """One refresh transaction; ``unsaved`` is set just before it saves a provider's answer."""

    unsaved: Unsaved | None = None
    # Celery's soft time limit, if it fired while save_again was trying: raised by the caller
    # once the answer is stored.
    interrupted: BaseException | None = None


def save_again(attempt: Attempt, failure: BaseException) -> Unsaved:
    """Save the answer ``attempt`` was saving when its transaction failed with ``failure``,
    or raise ``failure``.

    ``failure`` is a database error, or anything else that cut the transaction short after
    the provider answered: Celery's soft time limit firing in the UPDATE or the COMMIT, for
    one. A soft time limit firing during these tries does not stop them (they are bounded by
    RECOVERY_BUDGET): it is kept in ``attempt.interrupted`` for the caller to raise.

    Returns once the refresh is stored (by this call, or by the COMMIT that seemed to fail).
    """
    unsaved = attempt.unsaved
    if unsaved is None or isinstance(failure, DataError | IntegrityError):
        # Nothing from the provider to keep, or an error that a second try would repeat.
        raise failure
    token = unsaved.token
    written = _rows.ciphertexts(token)
    deadline = time.monotonic() + RECOVERY_BUDGET
    pause = _FIRST_PAUSE
    tries = 0
    state, last = "", ""
    while not state:
        tries += 1
        try:
            state = _compare_and_save(unsaved, written, deadline)
        except (Error, _rows.RowLocked, SoftTimeLimitExceeded) as exc:
            if isinstance(exc, SoftTimeLimitExceeded):
                attempt.interrupted = attempt.interrupted or exc
            last = str(exc) or type(exc).__name__
            if time.monotonic() + pause >= deadline:
                break
            try:
                time.sleep(pause)
            except SoftTimeLimitExceeded as interruption:
                attempt.interrupted = attempt.interrupted or interruption
            pause *= 2
    if state == "saved":
        logger.warning(
            "the refresh of token %s was saved by try %s after its save failed: %s",
            token.pk,
            tries,
            failure,
        )
        return unsaved
    if state == "landed":
        logger.warning(
            "the refresh of token %s was committed although the commit reported: %s",
            token.pk,
            failure,
        )
        return unsaved
    if state:
        _lost(unsaved, failure, f"the row was {state} meanwhile and is left as it is")
    else:
        _lost(unsaved, failure, f"{tries} more tries failed, the last with: {last}")
    # The error the caller would have seen without this second try.
    raise failure


def _compare_and_save(
    unsaved: Unsaved, written: tuple[str | None, str | None], deadline: float
) -> str:
    _drop_if_broken()
    with transaction.atomic(using=_rows.alias(), durable=True):
        lock_wait = min(RECOVERY_LOCK_WAIT, max(deadline - time.monotonic(), 0.1))
        row = _rows.lock_by_id(unsaved.token.pk, "wait", lock_wait=lock_wait)
        if row is None:
            return "deleted"
        stored = _rows.ciphertexts(row)
        if stored == written:
            return "landed"
        if stored != unsaved.replaced or row.status != OAuthToken.Status.ACTIVE:
            return "changed"
        _rows.save_fields(unsaved.token, unsaved.fields)
        return "saved"


def _drop_if_broken() -> None:
    # The failed transaction's exit usually closed a dead connection already; one that is
    # still open but unusable would fail every try, so close it and let Django reconnect.
    connection = connections[_rows.alias()]
    if connection.connection is not None and not connection.is_usable():
        connection.close()


def _lost(unsaved: Unsaved, failure: BaseException, why: str) -> None:
    if unsaved.rotated:
        logger.error(
            "the rotated refresh token of token %s could not be saved (%s; %s): the row keeps "
            "the refresh token it had, which the provider may no longer accept",
            unsaved.token.pk,
            failure,
            why,
        )
    else:
        logger.error(
            "the refreshed access token of token %s could not be saved (%s; %s); its refresh "
            "token did not change",
            unsaved.token.pk,
            failure,
            why,
        )
