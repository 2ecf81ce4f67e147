"""Receivers that record what a signal sent, for tests that assert on it."""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal


class Received:
    """``with Received(signal) as got:`` keeps each sending's keyword arguments in
    ``got.calls``."""

    def __init__(self, signal: Signal) -> None:
        self.calls: list[dict[str, Any]] = []
        self.signal = signal

    def __enter__(self) -> Received:
        self.signal.connect(self.receive, weak=False, dispatch_uid=id(self))
        return self

    def __exit__(self, *exc: object) -> None:
        self.signal.disconnect(dispatch_uid=id(self))

    def receive(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


class Raising(Received):
    """A receiver with a bug: it records the sending, then raises."""

    def receive(self, **kwargs: Any) -> None:
        super().receive(**kwargs)
        raise RuntimeError("a receiver's bug")
