"""Refreshes per second for 1, 2, 4 and 8 concurrent workers against a provider that answers
in 50 ms (benchmarks/_provider.py in its own process, one thread per connection).

Run from the repo root: ``.venv/bin/python benchmarks/throughput.py``.

Workers are threads of this process, each with its own database connection (Django gives each
thread its own) and sharing the library's one ``requests.Session``, as threads of a Celery
``--pool threads`` worker would. Two ways are measured at each level:

* ``refresh``: each worker calls ``services.refresh(token_id)`` (not forced) on its own list of
  distinct due tokens for ``DURATION`` seconds;
* ``refresh (processes)``: the same with worker processes instead of threads (what a Celery
  prefork pool does), to show how much of the shortfall is the GIL;
* ``refresh_due``: every worker runs ``services.refresh_due()`` at the same time over one shared
  pool of due tokens (overlapping sweeps; skip_locked keeps them apart), until all are done.

Ideal is workers / 0.05 s (each worker always waiting on the provider, nothing else costing
time). Target: at least 0.9 of ideal.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from _setup import (
    local_provider,
    make_tokens,
    median,
    percentile,
    print_machine,
    provider_settings,
    verdict,
)
from django.contrib.auth import get_user_model
from django.db import close_old_connections, connection
from django.test.utils import override_settings

from frameio_oauth import provider, services
from frameio_oauth.models import OAuthToken

DELAY = 0.05
LEVELS = (1, 2, 4, 8)
DURATION = 3.0
CALIBRATION_CALLS = 20
STALL = 0.08  # a refresh slower than this hit a stall (scheduling, GIL, fsync...)
SWEEP_TOKENS_PER_WORKER = 40  # about 2 s of ideal work per level
TARGET = 0.9
PREFIX = "bench-tp"


@dataclass
class LevelResult:
    workers: int
    done: int
    elapsed: float
    cpu: float
    skipped: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed

    @property
    def ratio(self) -> float:
        return self.rate / (self.workers / DELAY)


def due_tokens(tag: str, count: int) -> list[int]:
    # Due by both rules: expiry inside the 300 s margin and next_refresh_at in the past.
    tokens = make_tokens(
        f"{PREFIX}-{tag}",
        count,
        expires_in=timedelta(minutes=2),
        next_refresh_in=timedelta(minutes=-1),
    )
    return [token.pk for token in tokens]


def run_threads(workers: int, target: object, args_for: list[tuple[object, ...]]) -> float:
    """Start the workers together (barrier), return the wall time until the last one ends."""
    barrier = threading.Barrier(workers + 1)
    threads = [
        threading.Thread(target=target, args=(barrier, *args_for[i]), name=f"worker-{i}")
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def level_refresh(workers: int) -> LevelResult:
    per_worker = int(DURATION / DELAY * 1.5)
    ids = due_tokens(f"r{workers}", workers * per_worker)
    counts = [0] * workers
    latencies: list[float] = []

    def work(barrier: threading.Barrier, index: int, mine: list[int]) -> None:
        try:
            connection.ensure_connection()  # connect before the clock starts
            barrier.wait()
            deadline = time.perf_counter() + DURATION
            for token_id in mine:
                if time.perf_counter() >= deadline:
                    break
                started = time.perf_counter()
                services.refresh(token_id)
                latencies.append(time.perf_counter() - started)
                counts[index] += 1
        finally:
            connection.close()

    chunks = [(i, ids[i * per_worker : (i + 1) * per_worker]) for i in range(workers)]
    cpu0 = time.process_time()
    elapsed = run_threads(workers, work, chunks)
    cpu = time.process_time() - cpu0
    check_refreshed(ids, sum(counts))
    return LevelResult(workers, sum(counts), elapsed, cpu, latencies=latencies)


def process_worker(
    token_url: str,
    mine: list[int],
    barrier: Any,
    results: multiprocessing.Queue[tuple[int, float, float, list[float]]],
) -> None:
    """One worker process (spawned): refresh its own tokens until the deadline."""
    with override_settings(FRAMEIO_OAUTH=provider_settings(token_url)):
        connection.ensure_connection()
        provider.refresh_grant("warm-up")  # opens this process's HTTP connection
        cpu0 = time.process_time()
        barrier.wait()
        deadline = time.monotonic() + DURATION
        count = 0
        latencies = []
        for token_id in mine:
            if time.monotonic() >= deadline:
                break
            started = time.perf_counter()
            services.refresh(token_id)
            latencies.append(time.perf_counter() - started)
            count += 1
        ended = time.monotonic()
        cpu = time.process_time() - cpu0
        connection.close()
    results.put((count, cpu, ended, latencies))


def level_refresh_processes(workers: int, token_url: str) -> LevelResult:
    per_worker = int(DURATION / DELAY * 1.5)
    ids = due_tokens(f"p{workers}", workers * per_worker)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers + 1)
    results: multiprocessing.Queue[tuple[int, float, float, list[float]]] = context.Queue()
    os.environ["FRAMEIO_BENCH_CHILD"] = "1"
    try:
        processes = [
            context.Process(
                target=process_worker,
                args=(token_url, ids[i * per_worker : (i + 1) * per_worker], barrier, results),
            )
            for i in range(workers)
        ]
        for process in processes:
            process.start()
    finally:
        del os.environ["FRAMEIO_BENCH_CHILD"]
    barrier.wait(timeout=60)
    start = time.monotonic()
    reports = [results.get(timeout=60) for _ in range(workers)]
    for process in processes:
        process.join(timeout=30)
    done = sum(report[0] for report in reports)
    elapsed = max(report[2] for report in reports) - start
    check_refreshed(ids, done)
    return LevelResult(
        workers,
        done,
        elapsed,
        sum(report[1] for report in reports),
        latencies=[value for report in reports for value in report[3]],
    )


def check_refreshed(ids: list[int], expected: int) -> None:
    refreshed = OAuthToken.objects.filter(pk__in=ids, last_refreshed_at__isnull=False).count()
    if refreshed != expected:
        print(f"WARNING: {expected} refreshes counted but {refreshed} rows refreshed")


def clear_due_leftovers() -> int:
    """Delete other due benchmark tokens (the sweeps would take them too): the unused ones of
    the 'refresh' levels above, and any an earlier run of another script left behind."""
    leftovers = get_user_model().objects.filter(
        username__startswith="bench-", frameio_token__in=OAuthToken.objects.due()
    )
    count = leftovers.count()
    leftovers.delete()
    return count


def level_refresh_due(workers: int) -> LevelResult | None:
    get_user_model().objects.filter(username__startswith=f"{PREFIX}-").delete()
    ids = due_tokens(f"s{workers}", workers * SWEEP_TOKENS_PER_WORKER)
    stray = OAuthToken.objects.due().exclude(pk__in=ids).count()
    if stray:
        print(f"WARNING: {stray} other due tokens in this database; refresh_due mode skipped")
        return None
    summaries: list[services.RefreshSummary] = []

    def work(barrier: threading.Barrier) -> None:
        try:
            connection.ensure_connection()
            barrier.wait()
            summaries.append(services.refresh_due())
        finally:
            connection.close()

    cpu0 = time.process_time()
    elapsed = run_threads(workers, work, [() for _ in range(workers)])
    cpu = time.process_time() - cpu0
    refreshed = sum(summary.refreshed for summary in summaries)
    skipped = sum(summary.skipped for summary in summaries)
    if refreshed != len(ids):
        print(f"WARNING: {len(ids)} due, {refreshed} refreshed: {[s.as_dict() for s in summaries]}")
    return LevelResult(workers, refreshed, elapsed, cpu, skipped)


def main() -> None:
    print_machine(f"throughput: refreshes per second, provider answering in {DELAY * 1000:.0f} ms")
    with (
        local_provider(delay=DELAY) as server,
        override_settings(FRAMEIO_OAUTH=provider_settings(server.token_url)),
    ):
        print(f"provider: {server.token_url} (separate process, sleeps {DELAY} s per request)")
        print(f"{DURATION:.0f} s per level for 'refresh'; refresh_due runs until its pool is done")
        print()
        close_old_connections()
        # Warm up: one refresh through the HTTP pool and the ORM before timing anything.
        services.refresh(due_tokens("warm", 1)[0])
        # Calibration: one worker's bare HTTP call, and one refresh, against this provider.
        http_wall = []
        for _ in range(CALIBRATION_CALLS):
            start = time.perf_counter()
            provider.refresh_grant("calibration")
            http_wall.append(time.perf_counter() - start)
        refresh_wall = []
        for token_id in due_tokens("cal", CALIBRATION_CALLS):
            start = time.perf_counter()
            services.refresh(token_id)
            refresh_wall.append(time.perf_counter() - start)
        results: dict[str, list[LevelResult]] = {
            "refresh": [],
            "refresh (processes)": [],
            "refresh_due": [],
        }
        for workers in LEVELS:
            results["refresh"].append(level_refresh(workers))
        for workers in LEVELS:
            results["refresh (processes)"].append(
                level_refresh_processes(workers, server.token_url)
            )
        cleared = clear_due_leftovers()
        if cleared:
            print(f"before the sweeps: deleted {cleared} other due benchmark tokens")
        for workers in LEVELS:
            result = level_refresh_due(workers)
            if result is not None:
                results["refresh_due"].append(result)
        get_user_model().objects.filter(username__startswith=f"{PREFIX}-").delete()

    http_ms = median(http_wall) * 1000
    refresh_ms = median(refresh_wall) * 1000
    print(f"one bare HTTP call (provider.refresh_grant), wall: median {http_ms:.1f} ms")
    print(f"one services.refresh, one worker, wall: median {refresh_ms:.1f} ms")
    print(f"best ratio one worker can reach with this HTTP client: {DELAY * 1000 / http_ms:.3f}")
    print(f"best ratio one worker can reach with this refresh: {DELAY * 1000 / refresh_ms:.3f}")
    print()
    for mode, rows in results.items():
        print(f"mode {mode}:")
        for row in rows:
            ideal = row.workers / DELAY
            if mode == "refresh_due":
                extra = f", {row.skipped} rows skipped or re-checked"
            else:
                slow = sum(1 for value in row.latencies if value > STALL)
                extra = (
                    f"; latency per refresh median {median(row.latencies) * 1000:.1f} ms, "
                    f"p95 {percentile(row.latencies, 0.95) * 1000:.1f} ms, "
                    f"max {max(row.latencies) * 1000:.1f} ms, {slow} over {STALL * 1000:.0f} ms"
                )
            print(
                f"  {row.workers} workers: {row.rate:.1f} refreshes/s (ideal {ideal:.0f}/s), "
                f"ratio {row.ratio:.3f}, {row.done} refreshes in {row.elapsed:.2f} s, "
                f"CPU {row.cpu / row.done * 1000:.2f} ms per refresh "
                f"({row.cpu / row.elapsed * 100:.0f}% of one core in the workers){extra}"
            )
        print()
    for mode, rows in results.items():
        for row in rows:
            print(
                f"target {mode} {row.workers} workers >= {TARGET} of ideal: {row.ratio:.3f} -> "
                f"{verdict(row.ratio >= TARGET)}"
            )


if __name__ == "__main__":
    main()
