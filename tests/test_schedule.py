"""When a token is due (one rule for on-demand calls and the sweep), and what a failure or a
refresh counts its times from."""

from __future__ import annotations

import itertools
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
import time_machine
from django.test import override_settings
from django.utils import timezone

from frameio_oauth import services
from frameio_oauth.exceptions import ProviderUnavailable
from frameio_oauth.models import OAuthToken
from tests.support.frameio import TOKEN_URL
from tests.support.loopback import loopback_server, read_request
from tests.support.servers import issued_by
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.tokens import stored

pytestmark = pytest.mark.django_db

RULE_DOC = Path(__file__).resolve().parent.parent / "docs" / "design.md"
# The smallest first backoff docs/operations.md documents: 30 s, jittered into its upper half.
MIN_FIRST_BACKOFF = timedelta(seconds=15)
# Between recording a failure and the row's write (updated_at) there is only Python code.
RECORDING = timedelta(milliseconds=50)


def _answering(status: str, body: bytes, delay: float, headers: str = "") -> Callable[..., None]:
    def handle(conn: socket.socket, stop: threading.Event) -> None:
        try:
            read_request(conn)
        except ConnectionResetError:
            return
        time.sleep(delay)
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    return handle


def _silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accept, read, never answer; return once the client gives up and closes."""
    conn.settimeout(0.1)
    while not stop.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue


def _sweep_against(handler: Callable[..., None], timeout: float = 2) -> list[OAuthToken]:
    with loopback_server(handler) as url:
        settings = {**FRAMEIO_OAUTH, "TOKEN_URL": f"{url}/token", "HTTP_TIMEOUT": timeout}
        issued_by(settings)
        with override_settings(FRAMEIO_OAUTH=settings):
            services.refresh_due()
    return list(OAuthToken.objects.exclude(user__username="not-due").order_by("next_refresh_at"))


@pytest.fixture
def lowest_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every jittered delay at its lowest, so a delay counted from the wrong moment shows."""
    monkeypatch.setattr(random, "uniform", lambda low, high: low)


def test_a_sweeps_backoff_counts_from_each_rows_own_failure(
    make_due_tokens: Callable[[int], list[OAuthToken]], lowest_jitter: None
) -> None:
    make_due_tokens(3)
    rows = _sweep_against(_silent, timeout=0.3)
    assert [row.failure_count for row in rows] == [1] * 3
    for row in rows:
        assert row.next_refresh_at is not None
        assert row.next_refresh_at >= row.updated_at + MIN_FIRST_BACKOFF - RECORDING


def test_a_sweep_stops_once_the_provider_is_down_for_several_rows_in_a_row(
    make_due_tokens: Callable[[int], list[OAuthToken]],
) -> None:
    # The rest would only add load, HTTP_TIMEOUT each; they stay due for the next sweep.
    make_due_tokens(6)
    rows = _sweep_against(_silent, timeout=0.3)
    assert sorted(row.failure_count for row in rows) == [0, 0, 0, 1, 1, 1]
    assert all(row.next_refresh_at <= timezone.now() for row in rows if row.failure_count == 0)


def test_a_sweeps_retry_after_counts_from_the_rows_own_failure_and_stops_the_sweep(
    make_due_tokens: Callable[[int], list[OAuthToken]],
) -> None:
    make_due_tokens(4)
    busy = _answering("503 Service Unavailable", b"{}", 0.3, "Retry-After: 120\r\n")
    rows = _sweep_against(busy)
    [failed] = [row for row in rows if row.failure_count]
    assert failed.next_refresh_at is not None
    assert failed.next_refresh_at >= failed.updated_at + timedelta(seconds=120) - RECORDING
    assert sum(row.failure_count for row in rows) == 1


def test_a_rows_refresh_time_is_when_that_row_was_refreshed(
    make_due_tokens: Callable[[int], list[OAuthToken]],
) -> None:
    make_due_tokens(4)
    body = b'{"access_token": "AT", "refresh_token": "RT", "expires_in": 3600}'
    rows = _sweep_against(_answering("200 OK", body, 0.3))
    times = sorted(row.last_refreshed_at for row in rows if row.last_refreshed_at)
    assert len(times) == 4
    # One after another, each at least the provider's delay after the one before.
    assert all(b - a >= timedelta(seconds=0.25) for a, b in itertools.pairwise(times))
    for row in rows:
        assert row.expires_at - row.last_refreshed_at == timedelta(seconds=3600)


# --- one rule for on-demand calls and the sweep -----------------------------------------------


def test_a_token_living_shorter_than_the_margin_is_refreshed_once_not_on_every_call(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # 60 s tokens with the default 300 s margin.
    provider_http.post(TOKEN_URL, json={"access_token": "AT-60", "expires_in": 60})
    make_token(user, expires_at=timezone.now() - timedelta(seconds=1))
    tokens = [services.get_access_token(user) for _ in range(5)]
    assert tokens == ["AT-60"] * 5
    assert len(provider_http.calls) == 1


def test_on_demand_calls_and_the_sweep_find_a_token_due_at_the_same_moment(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={"access_token": "AT-400", "expires_in": 400})
    token = services.refresh(make_token(user).pk, force=True)
    assert token.next_refresh_at is not None
    for offset, due in ((-1, False), (1, True)):
        with time_machine.travel(token.next_refresh_at + timedelta(seconds=offset), tick=False):
            assert services.needs_refresh(token) is due
            assert (token.pk in services.due_token_ids()) is due


def test_an_expired_token_waits_for_its_backoff_like_any_other(user: Any, make_token: Any) -> None:
    now = timezone.now()
    token = make_token(
        user,
        expires_at=now - timedelta(seconds=1),
        next_refresh_at=now + timedelta(seconds=5),
        failure_count=3,
    )
    assert not services.needs_refresh(token)


def test_an_expired_token_without_a_schedule_is_due(user: Any, make_token: Any) -> None:
    # No refresh token: the refresh that comes due marks it for re-authorization.
    token = make_token(user, refresh_token=None, expires_at=timezone.now() - timedelta(seconds=1))
    OAuthToken.objects.filter(pk=token.pk).update(next_refresh_at=None)
    token.refresh_from_db()
    assert services.needs_refresh(token)


# docs/design.md's table of lifetimes and the window their tokens are refreshed in.
_ROW = re.compile(r"^\s*\|\s*([\d,]+)[^|]*\|\s*([\d,]+) and ([\d,]+)\s*\|\s*$")


def _documented_windows() -> list[tuple[int, int, int]]:
    def number(text: str) -> int:
        return int(text.replace(",", ""))

    rows = [_ROW.match(line) for line in RULE_DOC.read_text().splitlines()]
    return [(number(m[1]), number(m[2]), number(m[3])) for m in rows if m]


def test_the_docs_state_the_refresh_window_the_code_computes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    windows = _documented_windows()
    assert len(windows) >= 4, "docs/design.md's table of refresh windows was not found"
    issued = timezone.now()
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "REFRESH_MARGIN": 300}):
        for lifetime, earliest, latest in windows:
            seen = []
            for pick in (lambda low, high: low, lambda low, high: high):
                monkeypatch.setattr(random, "uniform", pick)
                seen.append((services.next_refresh_time(issued, lifetime) - issued).total_seconds())
            assert sorted(seen) == [earliest, latest], f"lifetime {lifetime}"


# --- backoff ----------------------------------------------------------------------------------


def test_backoff_grows_with_each_failure(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=503)
    delays = []
    # Frozen, so that the delays are exact whatever the machine's load.
    with time_machine.travel(timezone.now(), tick=False):
        for _ in range(4):
            with pytest.raises(ProviderUnavailable):
                services.refresh(due_token.pk, force=True)
            delays.append((stored(due_token).next_refresh_at - timezone.now()).total_seconds())
    # Full jitter in [d/2, d] with d = 30, 60, 120, 240 s.
    assert 15 <= delays[0] <= 30
    assert 120 <= delays[3] <= 240
    assert stored(due_token).failure_count == 4


def test_a_huge_retry_after_does_not_park_the_token_for_years(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=429, headers={"Retry-After": "99999999999"}, body="")
    with pytest.raises(ProviderUnavailable):
        services.refresh(due_token.pk)
    assert stored(due_token).next_refresh_at <= timezone.now() + timedelta(
        seconds=services.BACKOFF_CAP + 5
    )


@pytest.mark.parametrize("lifetime", [60, 120, 400, 3600, 86400])
@pytest.mark.parametrize("margin", [1, 20, 50, 300, 1_000_000])
def test_no_token_comes_due_before_half_its_lifetime_whatever_the_margin(
    monkeypatch: pytest.MonkeyPatch, lifetime: int, margin: int
) -> None:
    issued = timezone.now()
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the most jitter
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "REFRESH_MARGIN": margin}):
        due_after = (services.next_refresh_time(issued, lifetime) - issued).total_seconds()
    assert lifetime / 2 <= due_after < lifetime
