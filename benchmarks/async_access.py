"""services.aget_access_token(user): the fresh path against Django's own async read, and 64
concurrent async callers on one due token.

Run from the repo root: ``.venv/bin/python benchmarks/async_access.py``.

1. Fresh token: ``await services.aget_access_token(user)`` against ``await
   OAuthToken.objects.filter(user_id=...).afirst()`` plus reading a plaintext column, the same
   SQL through the same async ORM (which runs it in asgiref's worker thread), call by call in
   turns on one event loop. Target: median at most 1.25x the bare async read.
2. One due token, 64 async callers at once, each in a thread-sensitive context of its own as
   Django's ASGI handler gives every request, against the local provider answering in 50 ms.
   Target: one provider call, and every caller gets the same new token.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
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
from asgiref.sync import ThreadSensitiveContext
from django.contrib.auth import get_user_model
from django.test import override_settings

from frameio_oauth import provider, services
from frameio_oauth.models import OAuthToken

CALLS = 3_000
WARMUP = 300
TARGET_RATIO = 1.25
CALLERS = 64


async def fresh_path(token: OAuthToken) -> float:
    user = await get_user_model().objects.aget(pk=token.user_id)
    user_id = user.pk

    async def library() -> str:
        return await services.aget_access_token(user)

    async def bare() -> str:
        row = await OAuthToken.objects.filter(user_id=user_id).afirst()
        assert row is not None
        return row.provider_email

    variants: dict[str, Callable[[], Awaitable[Any]]] = {
        "aget_access_token": library,
        "bare afirst() + plaintext column": bare,
    }
    assert await library() == f"access-{user_id}-" + "a" * 64
    for func in variants.values():
        for _ in range(WARMUP):
            await func()
    timings: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for i in range(CALLS):
            shift = i % len(order)
            for name, func in order[shift:] + order[:shift]:
                start = clock()
                await func()
                timings[name].append(clock() - start)
    finally:
        gc.enable()
    print(f"fresh token, {CALLS} calls each, interleaved, after {WARMUP} warm-up calls each:")
    for name, values in timings.items():
        print(
            f"  {name}: median {median(values) / 1000:.1f} us, "
            f"p95 {percentile(values, 0.95) / 1000:.1f} us"
        )
    ratio = median(timings["aget_access_token"]) / median(
        timings["bare afirst() + plaintext column"]
    )
    print(f"  ratio aget_access_token / bare afirst() (median): {ratio:.3f}x")
    return ratio


async def racing_callers(token: OAuthToken) -> tuple[int, int, float]:
    user = await get_user_model().objects.aget(pk=token.user_id)
    calls = 0
    real = provider.refresh_grant

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    async def caller() -> str:
        # A thread of its own for the sync parts, as every ASGI request has.
        async with ThreadSensitiveContext():
            return await services.aget_access_token(user)

    provider.refresh_grant = counted  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        results = await asyncio.gather(*(caller() for _ in range(CALLERS)))
        took = time.perf_counter() - started
    finally:
        provider.refresh_grant = real  # type: ignore[assignment]
    stored = await OAuthToken.objects.aget(pk=token.pk)
    same = sum(1 for result in results if result == stored.access_token)
    print(f"{CALLERS} async callers on one due token, provider answering in 50 ms:")
    print(f"  provider calls: {calls}")
    print(f"  callers given the stored new token: {same} of {CALLERS}")
    print(f"  wall time for all: {took * 1000:.0f} ms")
    return calls, same, took


def main() -> None:
    print_machine("async_access: services.aget_access_token(user)")
    # Made before the loop runs: the set-up is sync ORM code.
    fresh = make_tokens(
        "bench-async", 1, expires_in=timedelta(hours=1), next_refresh_in=timedelta(minutes=55)
    )[0]
    ratio = asyncio.run(fresh_path(fresh))
    print()
    with (
        local_provider(0.05) as server,
        override_settings(FRAMEIO_OAUTH=provider_settings(server.token_url)),
    ):
        # A grant of the local provider: a token goes only to the server that issued it.
        due = make_tokens(
            "bench-async-due", 1, expires_in=timedelta(seconds=90), next_refresh_in=timedelta(0)
        )[0]
        calls, same, _ = asyncio.run(racing_callers(due))
    print()
    print(
        f"target median ratio <= {TARGET_RATIO}x: {ratio:.3f}x -> {verdict(ratio <= TARGET_RATIO)}"
    )
    print(f"target one provider call: {calls} -> {verdict(calls == 1)}")
    print(f"target every caller gets the new token: {same} -> {verdict(same == CALLERS)}")


if __name__ == "__main__":
    main()
