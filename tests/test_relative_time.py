"""Moments as people read them (frameio_oauth.relative_time), where Django's timesince says
"0 minutes": under a minute, and on the wrong side of now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.template import Context, Template
from django.utils import timezone

from frameio_oauth.relative_time import ago, from_now

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_moment_seconds_ago_was_just_now() -> None:
    assert ago(NOW - timedelta(seconds=59), NOW) == "just now"


def test_a_moment_a_little_in_the_future_was_just_now() -> None:
    # Another server's clock, a second ahead of this one.
    assert ago(NOW + timedelta(seconds=40), NOW) == "just now"


def test_a_moment_a_minute_ago_reads_one_minute_ago() -> None:
    assert ago(NOW - timedelta(minutes=1), NOW) == "1\xa0minute ago"


def test_a_moment_hours_ago_reads_in_two_units_or_one_when_asked() -> None:
    moment = NOW - timedelta(hours=3, minutes=20)
    assert ago(moment, NOW) == "3\xa0hours, 20\xa0minutes ago"
    assert ago(moment, NOW, depth=1) == "3\xa0hours ago"


def test_no_moment_reads_as_nothing() -> None:
    assert ago(None, NOW) == ""
    assert from_now(None, NOW) == ""


def test_a_moment_seconds_ahead_is_in_less_than_a_minute() -> None:
    assert from_now(NOW + timedelta(seconds=30), NOW) == "in less than a minute"


def test_a_moment_hours_ahead_reads_in_hours() -> None:
    assert from_now(NOW + timedelta(hours=23, minutes=59, seconds=59), NOW) == (
        "in 23\xa0hours, 59\xa0minutes"
    )


def test_a_moment_already_past_reads_as_ago_not_zero_minutes() -> None:
    assert from_now(NOW - timedelta(minutes=5), NOW) == "5\xa0minutes ago"
    assert from_now(NOW - timedelta(seconds=5), NOW) == "just now"


def test_the_template_filters_read_the_same() -> None:
    template = Template("{% load frameio_oauth %}{{ then|ago }} / {{ soon|from_now }}")
    now = timezone.now()
    text = template.render(
        Context(
            {"then": now - timedelta(seconds=3), "soon": now + timedelta(minutes=90, seconds=5)}
        )
    )
    assert text == "just now / in 1\xa0hour, 30\xa0minutes"
