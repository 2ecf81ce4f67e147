from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from frameio_oauth import services
from frameio_oauth.crypto import get_cipher


class Command(BaseCommand):
    help = "Re-encrypt every stored token under the first key in FRAMEIO_OAUTH['ENCRYPTION_KEYS']."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        primary = get_cipher().primary_kid
        self.stdout.write(f"primary key id: {primary}")

        def progress(done: int, rewritten: int) -> None:
            self.stdout.write(f"  {done} rows checked, {rewritten} re-encrypted")

        summary = services.rotate_encryption_keys(options["batch_size"], progress=progress)
        self.stdout.write(f"before: {self._counts(summary.before)}")
        self.stdout.write(f"after:  {self._counts(summary.after)}")
        if summary.undecryptable:
            # Exit status 1, so cron and monitoring notice, as frameio_refresh_tokens does.
            self.stdout.write(self.style.WARNING(f"{summary.rewritten} rows re-encrypted"))
            ids = ", ".join(str(pk) for pk in summary.undecryptable)
            raise CommandError(
                f"{len(summary.undecryptable)} row(s) could not be decrypted with any "
                f"configured key and were left as they are: token ids {ids}"
            )
        left = {kid: n for kid, n in summary.after.items() if kid != primary}
        if left:
            # Written meanwhile by a process still on the old ENCRYPTION_KEYS: dropping the old
            # key now would make these unreadable. Run again once every process has the new one.
            self.stdout.write(self.style.WARNING(f"{summary.rewritten} rows re-encrypted"))
            raise CommandError(
                f"secrets are still under other keys ({self._counts(left)}): run again once every "
                "process uses the new ENCRYPTION_KEYS, before dropping an old key"
            )
        self.stdout.write(self.style.SUCCESS(f"{summary.rewritten} rows re-encrypted"))

    @staticmethod
    def _counts(counts: dict[str, int]) -> str:
        return ", ".join(f"{kid}={n}" for kid, n in sorted(counts.items())) or "no secrets"
