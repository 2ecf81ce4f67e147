"""Every log record of a block, for property tests: pytest's caplog is one fixture shared by
all of a test's examples."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def texts(self) -> list[str]:
        """Each record's message, and its arguments as any other format could show them."""
        return [f"{record.getMessage()} {record.args!r}" for record in self.records]


@contextmanager
def logged(logger: str = "") -> Iterator[Records]:
    """The records ``logger`` (by default the root, so every logger) handles in the block."""
    handler, target = Records(), logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield handler
    finally:
        target.removeHandler(handler)
