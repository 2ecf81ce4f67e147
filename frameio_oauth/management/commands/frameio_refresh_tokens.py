from __future__ import annotations

import argparse
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from frameio_oauth import services
from frameio_oauth.exceptions import FrameioOAuthError
from frameio_oauth.models import OAuthToken


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


class Command(BaseCommand):
    help = "Refresh Frame.io tokens: every due one (default), or one user's."

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--due", action="store_true", help="every due token (default)")
        target.add_argument("--user", help="only this user's token (username)")
        parser.add_argument("--force", action="store_true", help="refresh even if not due")
        parser.add_argument("--dry-run", action="store_true", help="list, change nothing")
        parser.add_argument("--limit", type=_positive_int, default=None, help="at most N")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["user"]:
            self._one_user(options["user"], force=options["force"], dry_run=options["dry_run"])
            return
        if options["force"]:
            raise CommandError("--force needs --user; the sweep only takes due tokens")
        if options["dry_run"]:
            username = f"user__{get_user_model().USERNAME_FIELD}"
            due = OAuthToken.objects.due().values_list("pk", username, "next_refresh_at")
            rows = list(due[: options["limit"]] if options["limit"] else due)
            for pk, name, when in rows:
                self.stdout.write(f"would refresh token {pk} of {name} (due {when})")
            self.stdout.write(f"{len(rows)} token(s) due")
            return

        verbose = options["verbosity"] >= 2

        def progress(token_id: int, outcome: services.Outcome) -> None:
            if verbose:
                self.stdout.write(f"  token {token_id}: {outcome.value}")

        summary = services.refresh_due(options["limit"], progress=progress)
        line = (
            "refreshed {refreshed}, skipped {skipped}, failed {failed}, reauth {reauth}, "
            "revoked {revoked}, revocations failed {revocations_failed}".format(**summary.as_dict())
        )
        if summary.stopped:
            line += f"; stopped early: {summary.stopped}"
        # Exit status 1, so cron and monitoring notice. (A reauth is the user's to fix by
        # signing in again, not the operator's: it does not fail the run.)
        problems = []
        if summary.failed:
            problems.append(f"{summary.failed} refresh(es) failed")
        if summary.revocations_failed:
            problems.append(f"{summary.revocations_failed} revocation(s) failed")
        if problems:
            self.stdout.write(self.style.WARNING(line))
            raise CommandError(
                f"{' and '.join(problems)}; each row's last_error says why, and it is tried "
                "again after its backoff"
            )
        self.stdout.write(self.style.SUCCESS(line))

    def _one_user(self, username: str, *, force: bool, dry_run: bool) -> None:
        user_model = get_user_model()
        token = OAuthToken.objects.filter(
            **{f"user__{user_model.USERNAME_FIELD}": username}
        ).first()
        if token is None:
            raise CommandError(f"{username} has no Frame.io token")
        if token.status != OAuthToken.Status.ACTIVE:
            raise CommandError(f"{username}'s Frame.io token is {token.status}: not refreshable")
        if dry_run:
            if force or services.needs_refresh(token):
                self.stdout.write(f"would refresh token {token.pk} (expires {token.expires_at})")
            else:
                self.stdout.write(f"{_not_due(token)}; --force would refresh it")
            return
        try:
            token, outcome = services.refresh_with_outcome(token.pk, force=force)
        except FrameioOAuthError as exc:
            raise CommandError(f"refresh failed: {exc}") from exc
        if outcome is not services.Outcome.REFRESHED:
            self.stdout.write(f"{_not_due(token)}; nothing sent. --force refreshes it anyway")
            return
        self.stdout.write(
            self.style.SUCCESS(f"refreshed token {token.pk}; it expires {token.expires_at}")
        )


def _not_due(token: OAuthToken) -> str:
    backing_off = token.next_refresh_at is not None and token.next_refresh_at > timezone.now()
    if token.failure_count and backing_off:
        # Inside the margin but backing off: saying "not due" here would hide the failures.
        return (
            f"token {token.pk} is backing off after {token.failure_count} failed refresh(es) "
            f"until {token.next_refresh_at} (last error: {token.last_error}; expires "
            f"{token.expires_at})"
        )
    return f"token {token.pk} is not due (expires {token.expires_at})"
