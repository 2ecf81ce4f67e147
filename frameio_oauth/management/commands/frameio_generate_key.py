from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from frameio_oauth.crypto import decode_key, generate_key, key_id


class Command(BaseCommand):
    help = "Print a new encryption key for FRAMEIO_OAUTH['ENCRYPTION_KEYS'] (put it first)."
    # This is how a project gets its first key, so it must run while the checks still fail
    # for want of one (E002).
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        key = generate_key()
        self.stdout.write(key)
        self.stderr.write(f"key id: {key_id(decode_key(key))}")
