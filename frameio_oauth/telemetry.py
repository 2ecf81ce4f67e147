"""Metrics and traces through OpenTelemetry's API, when it is installed (the ``otel`` extra).

Without it nothing is imported and every hook here is a no-op costing an attribute check. No
attribute ever carries a token, code, verifier or secret: only enum values, row ids, status
codes and exception class names. Instrument names and Prometheus set-up: docs/operations.md.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.db import DatabaseError, connections

from . import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
except ImportError:  # the otel extra is not installed: every hook below does nothing
    otel_context = metrics = trace = None  # type: ignore[assignment]

logger = logging.getLogger("frameio_oauth.services")

ENABLED = metrics is not None
SCOPE = "frameio_oauth"
# Token calls take tens of milliseconds on a LAN and 150-300 ms across the internet; the
# deadline (HTTP_TIMEOUT) caps them at 10 s by default.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SWEEP_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_ROW_BUCKETS = (0, 1, 10, 100, 1_000, 10_000, 100_000)


class Endpoint(enum.Enum):
    TOKEN = "token"
    REVOKE = "revoke"
    USERINFO = "userinfo"


class RefreshOutcome(enum.Enum):
    REFRESHED = "refreshed"
    FAILED = "failed"
    REAUTH_REQUIRED = "reauth_required"


class FailureReason(enum.Enum):
    UNAVAILABLE = "unavailable"  # time-out, connection error, 5xx: tried again after a backoff
    RATE_LIMITED = "rate_limited"  # HTTP 429
    REFUSED = "refused"  # any other refusal, or an answer that cannot be used
    DECRYPTION = "decryption"  # the stored refresh token cannot be decrypted
    # The provider answered, and no save of its answer (a rotated refresh token) went through.
    NOT_SAVED = "not_saved"


class SweepKind(enum.Enum):
    SWEEP = "sweep"  # refresh_due: every due row refreshed in this process
    FANOUT = "fanout"  # a fanned-out tick: one task enqueued per due row


class _Instruments:
    def __init__(self) -> None:
        assert metrics is not None and trace is not None
        meter = metrics.get_meter(SCOPE, __version__)
        self.tracer = trace.get_tracer(SCOPE, __version__)
        self.refreshes = meter.create_counter(
            "frameio_oauth.refreshes",
            unit="{refresh}",
            description="Refreshes that reached an outcome, by outcome and failure reason",
        )
        self.provider_duration = meter.create_histogram(
            "frameio_oauth.provider.duration",
            unit="s",
            description="Time of one call to the authorization server, by endpoint",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS,
        )
        self.sweep_duration = meter.create_histogram(
            "frameio_oauth.sweep.duration",
            unit="s",
            description="Time of one sweep or fan-out tick",
            explicit_bucket_boundaries_advisory=_SWEEP_BUCKETS,
        )
        self.sweep_rows = meter.create_histogram(
            "frameio_oauth.sweep.rows",
            unit="{row}",
            description="Rows one sweep refreshed (attempted) or one fan-out tick enqueued",
            explicit_bucket_boundaries_advisory=_ROW_BUCKETS,
        )
        self.meter = meter


_instruments = _Instruments() if ENABLED else None


def record_refresh(outcome: RefreshOutcome, reason: FailureReason | None = None) -> None:
    """Count one refresh that reached an outcome (a failure with its reason)."""
    if _instruments is None:
        return
    attributes = {"frameio_oauth.outcome": outcome.value}
    if reason is not None:
        attributes["frameio_oauth.reason"] = reason.value
    _instruments.refreshes.add(1, attributes)


class _Span:
    """A span made current while it is open; ended with an error status if its block
    raised. Exceptions are not recorded on it: their text is not ours to vet."""

    __slots__ = ("_span", "_token")

    def __init__(self, name: str, kind: Any, attributes: dict[str, Any]) -> None:
        assert _instruments is not None and trace is not None and otel_context is not None
        self._span = _instruments.tracer.start_span(name, kind=kind, attributes=attributes)
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def set(self, name: str, value: Any) -> None:
        self._span.set_attribute(name, value)

    def end(self, error_type: str | None) -> None:
        assert trace is not None and otel_context is not None
        if error_type is not None:
            self._span.set_attribute("error.type", error_type)
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
        otel_context.detach(self._token)
        self._span.end()


class ProviderCall:
    """Times one call to the authorization server, in a CLIENT span; the caller sets
    ``status_code`` once the answer's status line is in. Made only with OpenTelemetry loaded
    (:func:`provider_call`), as are the two below."""

    __slots__ = ("_attributes", "_span", "_start", "endpoint", "status_code")

    def __init__(self, endpoint: Endpoint, method: str, url: str) -> None:
        self.endpoint = endpoint
        self.status_code: int | None = None
        self._attributes = {
            "frameio_oauth.endpoint": endpoint.value,
            "http.request.method": method,
            # Host only: the path is the endpoint's, and query strings can carry secrets.
            "server.address": urlsplit(url).hostname or "",
        }

    def __enter__(self) -> ProviderCall:
        assert trace is not None
        self._span = _Span(
            f"{self._attributes['http.request.method']} frameio_oauth.{self.endpoint.value}",
            trace.SpanKind.CLIENT,
            self._attributes,
        )
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert _instruments is not None
        seconds = time.perf_counter() - self._start
        attributes: dict[str, str | int] = {"frameio_oauth.endpoint": self.endpoint.value}
        error_type = exc_type.__name__ if exc_type is not None else None
        if self.status_code is not None:
            attributes["http.response.status_code"] = self.status_code
            if self.status_code >= 400 and error_type is None:
                error_type = str(self.status_code)
        if error_type is not None:
            attributes["error.type"] = error_type
        _instruments.provider_duration.record(seconds, attributes)
        if self.status_code is not None:
            self._span.set("http.response.status_code", self.status_code)
        self._span.end(error_type)


class RefreshSpan:
    """A span around one locked refresh of one row, current from its start until
    :meth:`finish`, which the refresh calls once its outcome is committed (or lost)."""

    __slots__ = ("_span",)

    def __init__(self, token_id: int) -> None:
        assert trace is not None
        self._span = _Span(
            "frameio_oauth.refresh", trace.SpanKind.INTERNAL, {"frameio_oauth.token.id": token_id}
        )

    def finish(self, outcome: str | None, error_type: str | None) -> None:
        if outcome is not None:
            self._span.set("frameio_oauth.outcome", outcome)
        self._span.end(error_type)


class SweepTimer:
    """Times one sweep or fan-out tick; the caller sets ``rows``."""

    __slots__ = ("_start", "kind", "rows")

    def __init__(self, kind: SweepKind) -> None:
        self.kind = kind
        self.rows = 0

    def __enter__(self) -> SweepTimer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        assert _instruments is not None
        attributes = {"frameio_oauth.sweep.kind": self.kind.value}
        _instruments.sweep_duration.record(time.perf_counter() - self._start, attributes)
        _instruments.sweep_rows.record(self.rows, attributes)


class Nothing:
    """What the hooks hand out without OpenTelemetry: one shared object that ignores the
    caller's notes (a write is dropped, so nothing adds up across calls) and does nothing."""

    status_code: int | None = None
    rows = 0

    def __setattr__(self, name: str, value: object) -> None:
        return None

    def __enter__(self) -> Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def finish(self, outcome: str | None, error_type: str | None) -> None:
        return None


NOTHING = Nothing()


def provider_call(endpoint: Endpoint, method: str, url: str) -> ProviderCall | Nothing:
    """``with provider_call(...) as call:`` around one call; set ``call.status_code``."""
    return NOTHING if _instruments is None else ProviderCall(endpoint, method, url)


def refresh_span(token_id: int) -> RefreshSpan | Nothing:
    """A span for one locked refresh, made current now; end it with ``finish()``."""
    return NOTHING if _instruments is None else RefreshSpan(token_id)


def sweep_timer(kind: SweepKind) -> SweepTimer | Nothing:
    """``with sweep_timer(kind) as sweep:`` around one sweep or tick; set ``sweep.rows``."""
    return NOTHING if _instruments is None else SweepTimer(kind)


def observe_backlog(
    backlog: Callable[[], tuple[int, float | None]], revocations_pending: Callable[[], int]
) -> None:
    """Gauges read from the database whenever a metric reader collects (nothing is read
    without one): rows overdue, the oldest one's wait, and revocations pending."""
    if _instruments is None or metrics is None:
        return
    observation = metrics.Observation
    shared = _Shared(backlog)

    def overdue(options: CallbackOptions) -> Iterable[Observation]:
        found = shared.read("overdue")
        return [] if found is None else [observation(found[0])]

    def oldest(options: CallbackOptions) -> Iterable[Observation]:
        found = shared.read("oldest")
        return [] if found is None else [observation(found[1] or 0.0)]

    def pending(options: CallbackOptions) -> Iterable[Observation]:
        count = _read_database(revocations_pending)
        return [] if count is None else [observation(count)]

    meter = _instruments.meter
    meter.create_observable_gauge(
        "frameio_oauth.tokens.overdue",
        callbacks=[overdue],
        unit="{token}",
        description="Active tokens due and not refreshed yet",
    )
    meter.create_observable_gauge(
        "frameio_oauth.tokens.oldest_overdue",
        callbacks=[oldest],
        unit="s",
        description="How long the oldest overdue token has been due (0 with none)",
    )
    meter.create_observable_gauge(
        "frameio_oauth.revocations.pending",
        callbacks=[pending],
        unit="{token}",
        description="Disconnected grants whose revocation the provider has not confirmed",
    )


class _Shared:
    """One database read shared by the gauges of one collection: a gauge asking again means
    a new collection, and a fresh read."""

    def __init__(self, read: Callable[[], tuple[int, float | None]]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._value: tuple[int, float | None] | None = None
        self._asked: set[str] = set()

    def read(self, gauge: str) -> tuple[int, float | None] | None:
        with self._lock:
            if not self._asked or gauge in self._asked:
                self._value = _read_database(self._read)
                self._asked = set()
            self._asked.add(gauge)
            return self._value


def _read_database(read: Callable[[], Any]) -> Any:
    """``read()``, leaving this thread's database connections as it found them: a metric
    reader's own thread would otherwise keep a connection open that nothing closes."""
    opened_before = {
        conn.alias for conn in connections.all(initialized_only=True) if conn.connection is not None
    }
    try:
        return read()
    except DatabaseError as exc:
        logger.warning("metrics: the token table could not be read: %s", type(exc).__name__)
        return None
    finally:
        for conn in connections.all(initialized_only=True):
            if conn.alias not in opened_before and conn.connection is not None:
                conn.close()
