from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from frameio_oauth import services

_KEY_USES = {
    services.KeyUse.PRIMARY: "primary",
    services.KeyUse.OLD: "old key: frameio_rotate_keys moves them",
    services.KeyUse.MISSING: "NOT CONFIGURED: cannot be decrypted",
}


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


class Command(BaseCommand):
    help = (
        "How the stored Frame.io tokens stand: counts by status and encryption key, refreshes "
        "failing now, the overdue backlog and pending revocations. With --max-overdue, exits 1 "
        "when the oldest overdue token has waited longer (a health check)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--backlog",
            action="store_true",
            help="only the overdue backlog: one index range scan, cheap at any table size "
            "(the full summary reads the whole table)",
        )
        parser.add_argument(
            "--max-overdue",
            type=_seconds,
            metavar="SECONDS",
            help="exit 1 when the oldest overdue token has waited longer than this",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["backlog"]:
            backlog = services.backlog()
            if options["json"]:
                self.stdout.write(json.dumps(backlog.as_dict(), indent=2))
            else:
                self._print_backlog(backlog)
        else:
            status = services.token_status()
            backlog = status.backlog
            if options["json"]:
                self.stdout.write(json.dumps(status.as_dict(), indent=2))
            else:
                self._print(status)
        limit = options["max_overdue"]
        oldest = backlog.oldest_overdue_seconds
        if limit is not None and oldest is not None and oldest > limit:
            # Exit status 1 (stderr), stdout untouched: a health check for cron or Kubernetes.
            raise CommandError(
                f"the oldest overdue token has waited {oldest:.0f} s, over --max-overdue "
                f"{limit:g} s: is the beat schedule running, and are the workers keeping up?"
            )

    def _print(self, status: services.TokenStatus) -> None:
        write = self.stdout.write
        total = sum(status.by_status.values())
        write(f"Frame.io tokens: {total}")
        write("  by status: " + ", ".join(f"{k} {n}" for k, n in status.by_status.items()))
        keys = [f"{key.key_id} {key.rows} ({_KEY_USES[key.use]})" for key in status.key_counts()]
        write("  by encryption key: " + (", ".join(keys) or "none"))
        line = f"failing now: {status.failing}"
        write(self.style.WARNING(line) if status.failing else line)
        for row in status.failing_rows:
            write(
                f"  token {row.token_id} of {row.user}: {row.failures} failure(s), next "
                f"attempt {row.next_attempt}, expires {row.expires_at}; {row.last_error}"
            )
        if status.failing > len(status.failing_rows):
            write(f"  ... and {status.failing - len(status.failing_rows)} more")
        self._print_backlog(status.backlog)
        write(f"revocations pending: {status.revocations_pending}")

    def _print_backlog(self, backlog: services.Backlog) -> None:
        oldest = backlog.oldest_overdue_seconds
        self.stdout.write(
            f"overdue: {backlog.overdue}"
            + ("" if oldest is None else f", the oldest due {oldest:.0f} s ago")
        )
