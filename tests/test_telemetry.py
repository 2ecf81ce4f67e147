"""Metrics and spans through OpenTelemetry (the otel extra), read with its in-memory readers;
and nothing imported, nothing recorded, without it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from django.db import OperationalError, connections
from django.test import override_settings
from django.utils import timezone
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableGauge
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, generate_latest

from frameio_oauth import services, telemetry
from frameio_oauth.models import OAuthToken
from tests.support.frameio import NEW, REVOKE_URL, TOKEN_URL
from tests.support.save_failures import OffsetClock, failing_commit, failing_saves
from tests.support.settings import FRAMEIO_OAUTH, OLD_TEST_KEY

pytestmark = pytest.mark.django_db

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRETS = ("AT-secret-new-0451", "RT-secret-new-0451", "access-", "refresh-", "client-secret")


@dataclass
class Telemetry:
    metrics: InMemoryMetricReader
    spans: InMemorySpanExporter

    def collect(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Every metric's (attributes, point) recorded since the last collection."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(
                        (dict(point.attributes or {}), point) for point in metric.data.data_points
                    )
        return found

    def finished(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]


_DELTA = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    ObservableGauge: AggregationTemporality.CUMULATIVE,
}


@pytest.fixture(scope="session")
def _otel_session() -> Telemetry:
    # OpenTelemetry takes one global provider per process: set once, read by every test here.
    reader = InMemoryMetricReader(preferred_temporality=_DELTA)  # type: ignore[arg-type]
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader, PrometheusMetricReader()]))
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    return Telemetry(reader, exporter)


@pytest.fixture
def otel(_otel_session: Telemetry) -> Iterator[Telemetry]:
    _otel_session.metrics.get_metrics_data()  # what earlier tests recorded, dropped
    _otel_session.spans.clear()
    yield _otel_session


def due(make_token: Any, user: Any, **values: Any) -> OAuthToken:
    token: OAuthToken = make_token(
        user, next_refresh_at=timezone.now() - timedelta(seconds=1), **values
    )
    return token


def counts(otel: Telemetry, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {
        tuple(sorted(attrs.items())): point.value for attrs, point in otel.collect().get(name, [])
    }


def test_a_refresh_is_counted_as_refreshed(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = due(make_token, user)
    provider_http.post(TOKEN_URL, json={"access_token": "a", "expires_in": 3600})
    services.refresh(token.pk)
    assert counts(otel, "frameio_oauth.refreshes") == {(("frameio_oauth.outcome", "refreshed"),): 1}


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": 503}, "unavailable"),
        ({"status": 429, "headers": {"Retry-After": "5"}}, "rate_limited"),
        ({"status": 400, "json": {"error": "invalid_client"}}, "refused"),
    ],
)
def test_a_failed_refresh_is_counted_with_its_reason(
    otel: Telemetry,
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    answer: dict[str, Any],
    reason: str,
) -> None:
    token = due(make_token, user)
    provider_http.post(TOKEN_URL, **answer)
    assert services.refresh_if_due(token.pk) is services.Outcome.FAILED
    assert counts(otel, "frameio_oauth.refreshes") == {
        (("frameio_oauth.outcome", "failed"), ("frameio_oauth.reason", reason)): 1
    }


def test_a_refresh_token_that_cannot_be_decrypted_is_counted_as_a_decryption_failure(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [OLD_TEST_KEY]}):
        token = due(make_token, user)
    assert services.refresh_if_due(token.pk) is services.Outcome.FAILED
    assert len(provider_http.calls) == 0
    assert counts(otel, "frameio_oauth.refreshes") == {
        (("frameio_oauth.outcome", "failed"), ("frameio_oauth.reason", "decryption")): 1
    }


def test_a_refused_grant_is_counted_as_reauthorization_required(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = due(make_token, user)
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    assert services.refresh_if_due(token.pk) is services.Outcome.REAUTH
    assert counts(otel, "frameio_oauth.refreshes") == {
        (("frameio_oauth.outcome", "reauth_required"),): 1
    }


def test_a_token_found_fresh_under_the_lock_is_not_counted(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    assert services.refresh_if_due(token.pk) is services.Outcome.NOT_DUE
    assert "frameio_oauth.refreshes" not in otel.collect()


def test_each_provider_call_is_timed_by_endpoint_and_status(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = due(make_token, user)
    provider_http.post(TOKEN_URL, json={"access_token": "a", "expires_in": 3600})
    provider_http.post(REVOKE_URL, status=503)
    services.refresh(token.pk)
    services.disconnect(user)
    timings = {
        (attrs["frameio_oauth.endpoint"], attrs.get("http.response.status_code")): point
        for attrs, point in otel.collect()["frameio_oauth.provider.duration"]
    }
    assert set(timings) == {("token", 200), ("revoke", 503)}
    assert timings[("token", 200)].count == 1
    assert 0 < timings[("token", 200)].sum < 5


def test_a_provider_call_that_times_out_is_timed_with_its_error_type(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = due(make_token, user)
    provider_http.post(TOKEN_URL, body=requests.ConnectTimeout())
    services.refresh_if_due(token.pk)
    [(attrs, point)] = otel.collect()["frameio_oauth.provider.duration"]
    assert attrs == {
        "frameio_oauth.endpoint": "token",
        "error.type": "ProviderUnavailable",
    }
    assert point.count == 1


def test_a_refresh_span_holds_the_provider_call_span(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = due(make_token, user)
    provider_http.post(TOKEN_URL, json={"access_token": "a", "expires_in": 3600})
    services.refresh(token.pk)
    [refresh] = otel.finished("frameio_oauth.refresh")
    [call] = otel.finished("POST frameio_oauth.token")
    assert call.parent is not None
    assert call.parent.span_id == refresh.context.span_id
    assert call.kind is trace.SpanKind.CLIENT
    assert dict(refresh.attributes or {}) == {
        "frameio_oauth.token.id": token.pk,
        "frameio_oauth.outcome": "refreshed",
    }
    assert dict(call.attributes or {}) == {
        "frameio_oauth.endpoint": "token",
        "http.request.method": "POST",
        "server.address": "applications.frame.io",
        "http.response.status_code": 200,
    }
    assert refresh.status.status_code is trace.StatusCode.UNSET


def test_a_failed_refresh_span_carries_an_error_status(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = due(make_token, user)
    provider_http.post(TOKEN_URL, status=503)
    services.refresh_if_due(token.pk)
    [refresh] = otel.finished("frameio_oauth.refresh")
    [call] = otel.finished("POST frameio_oauth.token")
    assert refresh.status.status_code is trace.StatusCode.ERROR
    assert refresh.attributes is not None
    assert refresh.attributes["error.type"] == "ProviderUnavailable"
    assert call.attributes is not None
    assert call.attributes["error.type"] == "503"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rotation_no_save_could_keep_is_counted_as_not_saved_and_its_span_fails(
    otel: Telemetry,
    due_token: OAuthToken,
    provider_http: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = OffsetClock(time.monotonic)
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    provider_http.post(TOKEN_URL, json=NEW)
    with failing_saves(None), pytest.raises(OperationalError):
        services.refresh(due_token.pk)
    assert counts(otel, "frameio_oauth.refreshes") == {
        (("frameio_oauth.outcome", "failed"), ("frameio_oauth.reason", "not_saved")): 1
    }
    [refresh] = otel.finished("frameio_oauth.refresh")
    assert refresh.status.status_code is trace.StatusCode.ERROR
    assert refresh.attributes is not None
    assert refresh.attributes["error.type"] == "OperationalError"
    assert "frameio_oauth.outcome" not in refresh.attributes
    assert trace.get_current_span() is trace.INVALID_SPAN


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rotation_saved_by_a_second_try_is_counted_once_as_refreshed(
    otel: Telemetry, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    with failing_commit(after_committing=False):
        services.refresh(due_token.pk)
    assert counts(otel, "frameio_oauth.refreshes") == {(("frameio_oauth.outcome", "refreshed"),): 1}
    [refresh] = otel.finished("frameio_oauth.refresh")
    assert refresh.status.status_code is trace.StatusCode.UNSET
    assert refresh.attributes is not None
    assert refresh.attributes["frameio_oauth.outcome"] == "refreshed"


def test_without_opentelemetry_the_shared_stand_in_keeps_no_note() -> None:
    nothing = telemetry.NOTHING
    nothing.rows = 5
    nothing.status_code = 200
    assert (telemetry.NOTHING.rows, telemetry.NOTHING.status_code) == (0, None)


def test_a_sweep_is_timed_with_the_rows_it_attempted(
    otel: Telemetry, make_due_tokens: Any, provider_http: responses.RequestsMock
) -> None:
    make_due_tokens(3)
    provider_http.post(TOKEN_URL, json={"access_token": "a", "expires_in": 3600})
    services.refresh_due()
    collected = otel.collect()
    [(attrs, rows)] = collected["frameio_oauth.sweep.rows"]
    assert attrs == {"frameio_oauth.sweep.kind": "sweep"}
    assert (rows.count, rows.sum) == (1, 3)
    [(_, duration)] = collected["frameio_oauth.sweep.duration"]
    assert duration.count == 1


def test_a_fan_out_tick_is_timed_with_the_rows_it_enqueued(
    otel: Telemetry, make_due_tokens: Any
) -> None:
    tokens = make_due_tokens(4)
    enqueued: list[int] = []
    assert services.fan_out_due(lambda token_id, eta: enqueued.append(token_id)) == 4
    assert sorted(enqueued) == sorted(token.pk for token in tokens)
    [(attrs, rows)] = otel.collect()["frameio_oauth.sweep.rows"]
    assert attrs == {"frameio_oauth.sweep.kind": "fanout"}
    assert rows.sum == 4


def test_the_backlog_gauges_read_the_table_when_collected(
    otel: Telemetry, django_user_model: Any, make_token: Any
) -> None:
    now = timezone.now()
    for index, age in enumerate((200, 20)):
        user = django_user_model.objects.create_user(f"late{index}")
        make_token(user, next_refresh_at=now - timedelta(seconds=age))
    make_token(django_user_model.objects.create_user("fresh"))
    make_token(django_user_model.objects.create_user("gone"), status=OAuthToken.Status.REVOKED)
    collected = otel.collect()
    [(_, overdue)] = collected["frameio_oauth.tokens.overdue"]
    assert overdue.value == 2
    [(_, oldest)] = collected["frameio_oauth.tokens.oldest_overdue"]
    assert 200 <= oldest.value < 230
    [(_, pending)] = collected["frameio_oauth.revocations.pending"]
    assert pending.value == 1


# PostgreSQL: Django never closes an in-memory SQLite database's connection (that would drop
# the database), so there the thread's connection stays by design.
@pytest.mark.postgres
def test_the_gauges_leave_a_metric_readers_thread_without_an_open_connection(
    otel: Telemetry,
) -> None:
    left_open: list[bool] = []

    def collect() -> None:
        otel.collect()
        left_open.append(connections["default"].connection is not None)

    reader = threading.Thread(target=collect)
    reader.start()
    reader.join()
    assert left_open == [False]


def test_no_secret_reaches_any_attribute(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = due(make_token, user)
    provider_http.post(
        TOKEN_URL,
        json={
            "access_token": SECRETS[0],
            "refresh_token": SECRETS[1],
            "expires_in": 3600,
        },
    )
    provider_http.post(REVOKE_URL, status=400, json={"error": f"bad {SECRETS[1]}"})
    services.refresh(token.pk)
    services.disconnect(user)
    values: list[str] = []
    for span in otel.spans.get_finished_spans():
        values += [str(value) for value in (span.attributes or {}).values()]
        values.append(str(span.status.description))
        values += [str(event.attributes) for event in span.events]
    for points in otel.collect().values():
        for attributes, _ in points:
            values += [str(value) for value in attributes.values()]
    assert values
    for value in values:
        assert not any(secret in value for secret in SECRETS), value


def test_prometheus_scrapes_the_metrics_under_their_documented_names(
    otel: Telemetry, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    due(make_token, user)
    provider_http.post(TOKEN_URL, json={"access_token": "a", "expires_in": 3600})
    services.refresh_due()
    scraped = generate_latest(REGISTRY).decode().splitlines()
    # (The exporter gives every series of a metric the union of their label names.)
    for name, label in (
        ("frameio_oauth_refreshes_total{", 'frameio_oauth_outcome="refreshed"'),
        ("frameio_oauth_provider_duration_seconds_bucket{", 'frameio_oauth_endpoint="token"'),
        ("frameio_oauth_sweep_duration_seconds_count{", ""),
        ("frameio_oauth_sweep_rows_count{", ""),
        ("frameio_oauth_tokens_overdue{", ""),
        ("frameio_oauth_tokens_oldest_overdue_seconds{", ""),
        ("frameio_oauth_revocations_pending{", ""),
    ):
        assert any(line.startswith(name) and label in line for line in scraped), name


ABSENT = textwrap.dedent(
    """
    import sys
    sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
    import django
    django.setup()
    from datetime import timedelta
    import responses
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from frameio_oauth import services, telemetry
    from frameio_oauth.models import OAuthToken
    from tests.support.frameio import TOKEN_URL

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("alice")
    now = timezone.now()
    token = OAuthToken.objects.create(
        user=user, provider="frameio", provider_user_id="1", access_token="a",
        refresh_token="r", expires_at=now + timedelta(hours=1),
        next_refresh_at=now + timedelta(minutes=55),
    )
    with CaptureQueriesContext(connection) as queries:
        services.get_access_token(user)
    assert len(queries) == 1, len(queries)
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, json={"access_token": "b", "expires_in": 3600})
        services.refresh(token.pk, force=True)
    services.refresh_due()
    OAuthToken.objects.update(next_refresh_at=timezone.now() - timedelta(seconds=1))
    ticks = [services.fan_out_due(lambda token_id, eta: None) for _ in range(3)]
    assert ticks == [1, 1, 1], ticks
    assert not telemetry.ENABLED
    loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
    print("loaded:", loaded)
    """
)


def test_without_the_extra_nothing_is_imported_and_a_refresh_still_works() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "FRAMEIO_TEST_DB": "sqlite",
        "PYTHONPATH": REPO,
    }
    env.pop("COVERAGE_PROCESS_START", None)
    done = subprocess.run(
        [sys.executable, "-c", ABSENT], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: ['opentelemetry']" in done.stdout  # only the blocked name itself
